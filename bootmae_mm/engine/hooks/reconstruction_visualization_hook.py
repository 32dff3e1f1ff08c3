import os
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
from mmengine.dataset import default_collate
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS
from mmpretrain.utils import get_ori_model

from ...visualization import plot_curves, reconstruction_grid_from_batch


@HOOKS.register_module()
class ReconstructionVisualizationHook(Hook):
    """Shows what a BootMAE model reconstructs while it trains.

    Every ``interval`` iterations and at the end of training it runs the
    model (in eval mode, without gradients) on a fixed batch:
    ``num_images`` training samples spread evenly over the dataset (so
    over its classes), passed once through the training pipeline with a
    fixed seed (same crops, same masks every time), and writes the grid of
    :func:`bootmae_mm.visualization.make_reconstruction_grid`
    (original | masked input | prediction | prediction pasted into the
    visible image) to ``work_dir/<out_dir>/iter_<iter>.png`` and to every
    backend of the runner's visualizer (``add_image('reconstruction',
    ...)``: TensorBoard, WandB, ``vis_data/vis_image`` of the local one).

    At the end of training it also plots the scalar log (losses, feature
    weight, momentum, lr) to ``work_dir/curves.png``.

    Args:
        interval (int): iterations between two grids. Defaults to 500.
        num_images (int): rows of the grid. Defaults to 4.
        out_dir (str): sub-folder of the work dir for the PNGs.
            Defaults to ``'vis'``.
        scale (int, optional): cell upscaling; defaults to the smallest
            factor that makes cells at least 128 pixels high.
        seed (int): seed of the fixed batch's augmentation and masks.
            Defaults to 0.
        plot_curves (bool): write ``curves.png`` after training.
            Defaults to True.
    """
    priority = 'LOW'

    def __init__(self, interval: int = 500, num_images: int = 4,
                 out_dir: str = 'vis', scale: Optional[int] = None,
                 seed: int = 0, plot_curves: bool = True):
        if interval < 1 or num_images < 1:
            raise ValueError('ReconstructionVisualizationHook: interval and '
                             'num_images must be >= 1.')
        self.interval = interval
        self.num_images = num_images
        self.out_dir = out_dir
        self.scale = scale
        self.seed = seed
        self.plot_curves = plot_curves
        self._batch = None

    def _fixed_batch(self, runner) -> dict:
        """``num_images`` training samples, evenly spread, seeded."""
        dataset = runner.train_dataloader.dataset
        n = min(self.num_images, len(dataset))
        indices = np.linspace(0, len(dataset) - 1, n).round().astype(int)
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            samples = [dataset[int(i)] for i in indices]
        finally:
            np.random.set_state(state)
        return default_collate(samples)

    def before_train(self, runner) -> None:
        self._batch = self._fixed_batch(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self.visualize(runner, runner.iter + 1)

    def after_train(self, runner) -> None:
        if runner.iter % self.interval:  # the last grid is not there yet
            self.visualize(runner, runner.iter)
        if self.plot_curves:
            scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
            if osp.isfile(scalars):
                plot_curves(scalars, osp.join(runner.work_dir, 'curves.png'))
            else:
                runner.logger.warning(
                    f'ReconstructionVisualizationHook: no scalar log at '
                    f'{scalars} (add a LocalVisBackend), no curves.png.')

    def visualize(self, runner, step: int) -> str:
        """Write the grid of the current model after ``step`` iterations;
        returns the PNG's path."""
        model = get_ori_model(runner.model)
        if self._batch is None:
            self._batch = self._fixed_batch(runner)
        was_training = model.training
        model.eval()
        try:
            grid = reconstruction_grid_from_batch(model, self._batch,
                                                  self.scale)
        finally:
            model.train(was_training)
        folder = osp.join(runner.work_dir, self.out_dir)
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f'iter_{step:06d}.png')
        mmcv.imwrite(mmcv.rgb2bgr(grid), path)
        runner.visualizer.add_image('reconstruction', grid, step=step)
        return path
