"""The reproduction study: the paper's ablations trained for the same budget on the same data and seeds,
scored on the same test sets, written up as a table and a plot of validation PSNR against training time.

    python -m study --scale demo        # the built-in demo set, a reduced model (CPU)
    python -m study --scale shared      # real images from ../shared/data (CPU)
    python -m study --scale paper       # the paper's data roots and settings (a GPU; documented, not run here)

`variants` holds the variants and the scales, `runner` trains and summarises each run through `trainer.main`
(validation goes through the trainer's own `--val_dir`), `report` turns the summaries into STUDY.md's
tables, the PNG plot and TensorBoard scalars.
"""
