"""Who reads what: GDCM for header tags (:mod:`.gdcm_headers`), SimpleITK/ITK for decoding
(:mod:`.itk_decode`), and a zero-copy reader for uncompressed pixel bytes (:mod:`.native_decode`)
where scripts/benchmark.py shows it faster and tests show it voxel-identical to ITK."""
