// Package eval holds the feature-level evaluation maths of H-JEPA: a linear
// probe (multinomial logistic regression fitted by L-BFGS), a DINO-style
// weighted kNN classifier, the RankMe effective rank and per-dimension std
// collapse monitors, and .npy I/O for exported features.
//
// Everything works on plain row-major float32 feature matrices [N, D] with
// int labels in [0, C); the caller extracts features from a model. Heavy
// products run through tensor/sgemm on a tensor/parallel pool; parameters,
// losses and reductions are float64.
package eval
