"""Dataset code for DA-RCOT: layouts and pairing, the official training lists, noise and the demo's synthetic
degradations, the training set, the test sets, the demo builder and the data checker.

Each concept lives in its own module (`tasks`, `image_io`, `layouts`, `train_lists`, `noise`, `synthetic`,
`train_set`, `test_sets`, `demo`, `check`); import from those. The default data roots are `data/Train` and
`data/Test` (their contents are never committed); `python -m data.demo` builds a small stand-in under
`data/demo`. `data/lists/` holds the official training lists (data, committed).
"""
