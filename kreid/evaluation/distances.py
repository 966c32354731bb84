"""Query x gallery distances in NumPy: the one implementation lives in
:mod:`kreid_edge.distances` so that evaluation and the device's gallery matcher
compute identical (centred, chunked) distances."""

from kreid_edge.distances import (METRICS, center, distance_chunk,  # noqa: F401
                                  distance_matrix, iter_distance_chunks)
