package nn

// float64 reference implementations of every module's forward, written
// directly from the PyTorch definitions (I-JEPA's vision_transformer.py), for
// the finite-difference gradient checks.

import (
	"math"
)

// params64 maps a parameter's full name to its values in float64.
type params64 map[string][]float64

// refLinear: x [R, in] -> [R, out], y = x W^T + b.
func refLinear(x []float64, r, in, out int, w, bias []float64) []float64 {
	y := make([]float64, r*out)
	for i := 0; i < r; i++ {
		for o := 0; o < out; o++ {
			s := 0.0
			if bias != nil {
				s = bias[o]
			}
			for k := 0; k < in; k++ {
				s += x[i*in+k] * w[o*in+k]
			}
			y[i*out+o] = s
		}
	}
	return y
}

func (p params64) linear(name string, x []float64, r, in, out int) []float64 {
	return refLinear(x, r, in, out, p[name+".weight"], p[name+".bias"])
}

// refLayerNorm: biased variance, eps inside the sqrt.
func refLayerNorm(x []float64, r, d int, w, b []float64, eps float64) []float64 {
	y := make([]float64, r*d)
	for i := 0; i < r; i++ {
		row := x[i*d : (i+1)*d]
		mean := 0.0
		for _, v := range row {
			mean += v
		}
		mean /= float64(d)
		variance := 0.0
		for _, v := range row {
			variance += (v - mean) * (v - mean)
		}
		variance /= float64(d)
		rstd := 1 / math.Sqrt(variance+eps)
		for k, v := range row {
			y[i*d+k] = (v-mean)*rstd*w[k] + b[k]
		}
	}
	return y
}

func (p params64) layerNorm(name string, x []float64, r, d int, eps float64) []float64 {
	return refLayerNorm(x, r, d, p[name+".weight"], p[name+".bias"], eps)
}

func refGELU(x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = 0.5 * v * (1 + math.Erf(v/math.Sqrt2))
	}
	return y
}

// refAttention: qkv [B, N, 3, H, Dh] -> out [B, N, H*Dh].
func refAttention(qkv []float64, bs, n, h, dh int, scale float64) []float64 {
	d := h * dh
	out := make([]float64, bs*n*d)
	at := func(b, t, which, head, k int) float64 {
		return qkv[((b*n+t)*3+which)*d+head*dh+k]
	}
	logits := make([]float64, n)
	for b := 0; b < bs; b++ {
		for head := 0; head < h; head++ {
			for i := 0; i < n; i++ {
				mx := math.Inf(-1)
				for j := 0; j < n; j++ {
					s := 0.0
					for k := 0; k < dh; k++ {
						s += at(b, i, 0, head, k) * at(b, j, 1, head, k)
					}
					logits[j] = s * scale
					mx = math.Max(mx, logits[j])
				}
				z := 0.0
				for j := range logits {
					logits[j] = math.Exp(logits[j] - mx)
					z += logits[j]
				}
				for k := 0; k < dh; k++ {
					s := 0.0
					for j := 0; j < n; j++ {
						s += logits[j] / z * at(b, j, 2, head, k)
					}
					out[(b*n+i)*d+head*dh+k] = s
				}
			}
		}
	}
	return out
}

func add64(a, b []float64) []float64 {
	y := make([]float64, len(a))
	for i := range a {
		y[i] = a[i] + b[i]
	}
	return y
}

func (p params64) mlp(prefix string, x []float64, r, d, hidden int) []float64 {
	h := refGELU(p.linear(prefix+"fc1", x, r, d, hidden))
	return p.linear(prefix+"fc2", h, r, hidden, d)
}

func (p params64) attention(prefix string, x []float64, bs, n, d, heads int) []float64 {
	qkv := p.linear(prefix+"qkv", x, bs*n, d, 3*d)
	dh := d / heads
	o := refAttention(qkv, bs, n, heads, dh, math.Pow(float64(dh), -0.5))
	return p.linear(prefix+"proj", o, bs*n, d, d)
}

func (p params64) block(prefix string, x []float64, bs, n, d, heads, hidden int, eps float64) []float64 {
	r := bs * n
	h := add64(x, p.attention(prefix+"attn.", p.layerNorm(prefix+"norm1", x, r, d, eps), bs, n, d, heads))
	return add64(h, p.mlp(prefix+"mlp.", p.layerNorm(prefix+"norm2", h, r, d, eps), r, d, hidden))
}

// refPatchEmbedConv is the Conv2d definition itself (not Patchify + Linear):
// out[b, n=(i,j), o] = bias[o] + sum_{c,u,v} W[o, c, u, v] img[b, c, i*p+u, j*p+v].
func refPatchEmbedConv(img []float64, bs, c, hw, p int, w, bias []float64, d int) []float64 {
	g := hw / p
	out := make([]float64, bs*g*g*d)
	for b := 0; b < bs; b++ {
		for i := 0; i < g; i++ {
			for j := 0; j < g; j++ {
				for o := 0; o < d; o++ {
					s := bias[o]
					for ch := 0; ch < c; ch++ {
						for u := 0; u < p; u++ {
							for v := 0; v < p; v++ {
								s += w[((o*c+ch)*p+u)*p+v] * img[((b*c+ch)*hw+i*p+u)*hw+j*p+v]
							}
						}
					}
					out[((b*g+i)*g+j)*d+o] = s
				}
			}
		}
	}
	return out
}

// refSinCos follows get_2d_sincos_pos_embed line by line: grid =
// meshgrid(grid_w, grid_h); emb_h from grid[0], emb_w from grid[1].
func refSinCos(dim, gs int) []float64 {
	oneD := func(ed int, pos []float64) [][]float64 {
		omega := make([]float64, ed/2)
		for k := range omega {
			omega[k] = 1 / math.Pow(10000, float64(k)/(float64(ed)/2))
		}
		out := make([][]float64, len(pos))
		for m, ps := range pos {
			row := make([]float64, ed)
			for k, om := range omega {
				row[k] = math.Sin(ps * om)
				row[ed/2+k] = math.Cos(ps * om)
			}
			out[m] = row
		}
		return out
	}
	// meshgrid(grid_w, grid_h): grid0[i][j] = grid_w[j], grid1[i][j] = grid_h[i].
	g0 := make([]float64, gs*gs)
	g1 := make([]float64, gs*gs)
	for i := 0; i < gs; i++ {
		for j := 0; j < gs; j++ {
			g0[i*gs+j] = float64(j)
			g1[i*gs+j] = float64(i)
		}
	}
	eh, ew := oneD(dim/2, g0), oneD(dim/2, g1)
	out := make([]float64, 0, gs*gs*dim)
	for m := range eh {
		out = append(out, eh[m]...)
		out = append(out, ew[m]...)
	}
	return out
}

// refEncoder is I-JEPA's VisionTransformer.forward: embed all patches, add
// positions, apply_masks (keep), blocks, norm. keep nil keeps all.
func (p params64) encoder(cfg ViTConfig, img []float64, bs int, keep [][]int) []float64 {
	d, g := cfg.Dim, cfg.GridSize()
	np := g * g
	x := refPatchEmbedConv(img, bs, cfg.InChans, cfg.ImgSize, cfg.PatchSize, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], d)
	pos := refSinCos(d, g)
	for b := 0; b < bs; b++ {
		for t := 0; t < np; t++ {
			for k := 0; k < d; k++ {
				x[(b*np+t)*d+k] += pos[t*d+k]
			}
		}
	}
	n := np
	if keep != nil {
		n = len(keep[0])
		y := make([]float64, 0, bs*n*d)
		for b := 0; b < bs; b++ {
			for _, t := range keep[b] {
				y = append(y, x[(b*np+t)*d:(b*np+t+1)*d]...)
			}
		}
		x = y
	}
	eps := float64(cfg.Eps)
	for i := 0; i < cfg.Depth; i++ {
		x = p.block(blockName("blocks.", i), x, bs, n, d, cfg.Heads, cfg.Hidden(), eps)
	}
	return p.layerNorm("norm", x, bs*n, d, eps)
}

func blockName(prefix string, i int) string {
	return prefix + itoa(i) + "."
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// refPredictor is VisionTransformerPredictor.forward with masks_x = [ctxIdx]
// and masks = M target masks stacked as rows m*B+i of tgtIdx.
func (p params64) predictor(cfg PredictorConfig, ctx []float64, bs int, ctxIdx, tgtIdx [][]int) []float64 {
	d, dp := cfg.EmbedDim, cfg.Dim
	nc, nt := len(ctxIdx[0]), len(tgtIdx[0])
	bt := len(tgtIdx)
	pos := refSinCos(dp, cfg.GridSize)
	x := p.linear("predictor_embed", ctx, bs*nc, d, dp)
	for b := 0; b < bs; b++ {
		for t, pi := range ctxIdx[b] {
			for k := 0; k < dp; k++ {
				x[(b*nc+t)*dp+k] += pos[pi*dp+k]
			}
		}
	}
	n := nc + nt
	z := make([]float64, 0, bt*n*dp)
	mt := p["mask_token"]
	for i := 0; i < bt; i++ {
		z = append(z, x[(i%bs)*nc*dp:(i%bs+1)*nc*dp]...)
		for _, pi := range tgtIdx[i] {
			for k := 0; k < dp; k++ {
				z = append(z, mt[k]+pos[pi*dp+k])
			}
		}
	}
	eps := float64(cfg.Eps)
	for i := 0; i < cfg.Depth; i++ {
		z = p.block(blockName("predictor_blocks.", i), z, bt, n, dp, cfg.Heads, cfg.Hidden(), eps)
	}
	z = p.layerNorm("predictor_norm", z, bt*n, dp, eps)
	zt := make([]float64, 0, bt*nt*dp)
	for i := 0; i < bt; i++ {
		zt = append(zt, z[(i*n+nc)*dp:(i+1)*n*dp]...)
	}
	return p.linear("predictor_proj", zt, bt*nt, dp, d)
}
