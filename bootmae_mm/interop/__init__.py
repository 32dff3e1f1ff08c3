"""Interoperability: checkpoint files (safe reading, URL cache, adapters),
checkpoint loading, the reference implementation's parameter names,
exports, the model zoo, and mmpretrain's stock ViTs as BootMAE encoders.

``import bootmae_mm`` imports the modules that register components; this
package's ``__init__`` imports none of them, so that the method
(``bootmae_mm.models``) and the shims (``bootmae_mm.compat``) can import
one module of it without the rest."""
