// Package eval is the evaluation pipeline of H-JEPA: Run is `hjepa eval`
// (open the device, build the rows — raw pixels, the target encoder at
// initialisation, a checkpoint's target and context encoders — extract their
// features in one pass over each split, score them, print the rows and the
// table, write the JSON), Embed is `hjepa embed` (features as .npy) and Export
// is `hjepa export` (an encoder as timm .safetensors). The commands only parse
// flags into a Request.
//
// Underneath is the feature-level maths: a linear probe (multinomial logistic
// regression fitted by L-BFGS), a DINO-style weighted kNN classifier, the
// RankMe effective rank and per-dimension std collapse monitors, and .npy I/O.
// They work on plain row-major float32 feature matrices [N, D] with int
// labels in [0, C); heavy products run through tensor/sgemm on a
// tensor/parallel pool; parameters, losses and reductions are float64.
package eval
