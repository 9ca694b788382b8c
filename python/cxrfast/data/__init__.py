"""The data layer: manifests, labels and their policies, the prepared cache, datasets, augmentation
and loaders (torch and DALI), CT series and display policies, masks and reports, and the synthetic
phantoms (radiographs, CT volumes, reports) the tests and demos use."""
