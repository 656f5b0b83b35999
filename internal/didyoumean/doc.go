// Package didyoumean suggests the known name an unknown one is probably a
// typo of, for configuration keys and catalog profile names. It uses the
// optimal string alignment distance (Levenshtein plus transpositions of
// neighbours), because the typos people make are mostly one wrong, missing,
// extra or swapped character ("tabel", "min_tll", "azure-spere").
package didyoumean
