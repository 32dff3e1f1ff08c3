"""Draw the embedded demo picture set (no download), ImageNet layout.

    python tools/make_demo_data.py [ROOT] [--num-train 100] [--num-val 50]
                                   [--img-size 64] [--seed 0]

The demo config draws it by itself on first use; this tool draws it ahead
of time, or somewhere else. Running it again with the same settings leaves
the folder untouched.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from bootmae_mm.datasets.demo_pictures import DEMO_CLASSES, make_demo_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root', nargs='?', default='data/demo')
    parser.add_argument('--num-train', type=int, default=100,
                        help='training pictures per class')
    parser.add_argument('--num-val', type=int, default=50,
                        help='validation pictures per class')
    parser.add_argument('--img-size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    make_demo_dataset(args.root, num_train=args.num_train,
                      num_val=args.num_val, img_size=args.img_size,
                      seed=args.seed)
    print(f'{args.root}: {len(DEMO_CLASSES)} classes x {args.num_train} '
          f'train / {args.num_val} val pictures of {args.img_size} px '
          f'({", ".join(DEMO_CLASSES)})')


if __name__ == '__main__':
    main()
