"""Public spectral corpora for pretraining: download, safe extraction, conversion onto the
physical axis and tfds (array_record) builds with a manifest.

    python -m data_prep.public_corpora --source=rruff|nist|chembl|uspto|mpx --raw_dir=DIR \
        --out=DIR [--download]

Modules: `common` (settings, the physical-axis conversion, the build report), `lines` (computed
line lists to spectra), `archives` (safe zip/tar extraction), one module per source (`rruff`,
`nist`, `chembl`, `uspto`, `mpx`), `builder` (the tfds builder and the build steps). What each
source is and what its conversion does: docs/CORPORA.md.
"""
