"""The networks and model files: presets, preprocessing, architectures, precision, saving and loading.

Two presets (``quick_cnn_trainer.py --preset``):

- ``seed``: the seed's network, layer for layer (:func:`architectures.create_seed_cnn`), on
  the full image at its native size, adam, 15 epochs at batch size 5. At 512²
  it has 29,594,562 parameters, almost all in the Dense layer after a
  462,400-wide Flatten.
- ``modern``: built for a 2-core CPU and for galaxies (:func:`architectures.build_modern_cnn`
  with :data:`presets.MODERN_PRESET`): centre crop, downsample to 64 px, four
  Conv-BatchNorm-ReLU blocks ending in global average pooling (~0.29 M
  parameters), augmentation by the eight flips/90° rotations, small shifts and
  brightness (galaxies have no up or down), class weights, AdamW with warm-up and
  cosine decay, label smoothing, early stopping on validation loss over the
  second half of the schedule with the best weights of it restored.

Field of view: a preset says how much sky its network looks at, in petroR90
across (:attr:`presets.Preset.view_petro_radii`; the modern one 3.55, the seed the whole
frame). Training computes its crop from the data's recorded field
(:mod:`galaxy_classification.data.field_of_view`): 3.55 / 5.12 = 0.69 of an ``sdss_query`` frame, 3.55 /
10.15 = 0.35 of a Galaxy Zoo 1 frame. ``--crop`` overrides it.

The two saved files take different inputs:

- ``.keras``: the self-preprocessing classifier. A :class:`preprocessing.GalaxyPreprocessing`
  layer takes raw uint8 RGB of any size ``(None, None, 3)``, keeps the centre
  crop it was trained with, resizes (bilinear, antialiased) and scales to
  [0, 1]; it also records the field the network was trained on. ``predict``
  reads that record and crops each input to the same sky (:class:`files.Classifier`).
- ``.h5``: the seed's contract. The bare network in plain Keras layers, which
  ``keras.models.load_model`` opens with nothing of this project imported, and
  which takes what the seed fed it: float32 in [0, 1] at the trained size
  (``clean_data``). Its field of view is kept in the file's HDF5 attributes.

Nothing here imports Keras until a module that needs it (``preprocessing``,
``architectures``, ``files``) is imported.
"""
