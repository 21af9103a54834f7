"""Files for MR research pipelines: FSL .bval/.bvec and BIDS sidecar keys."""
