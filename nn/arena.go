// Package nn holds the layers of the ViT encoder and the I-JEPA predictor with
// explicit Forward and Backward methods (no autograd), their parameters in one
// flat arena per model, and the fixed 2-D sin-cos position tables.
//
// Conventions shared by every module:
//   - Forward(b, x) returns its output in a buffer the module owns (a grow-only
//     tensor.Workspace) and remembers x; x must stay unchanged until Backward.
//   - Backward(b, dx, dy) ACCUMULATES parameter gradients into the arena
//     (dW += ...). The input gradient dx is OVERWRITTEN (dx nil skips it),
//     except LayerNorm.Backward, which accumulates into dx as the backend's
//     kernel does (the residual stream's gradient is already there).
//   - Parameter names are the PyTorch state_dict keys of I-JEPA/timm.
package nn

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hjepa-go/hjepa/tensor"
)

// Param is one named parameter: a view (W) into an arena's values and a view
// (G) of the same shape into its gradients. W and G are nil until the
// Builder that declared the parameter is built.
type Param struct {
	Name  string
	Shape []int
	// Offset is the element offset of the parameter in its arena.
	Offset int
	// Decay says whether AdamW applies weight decay (false for biases,
	// LayerNorm parameters, every 1-D parameter and the mask token).
	Decay bool
	W, G  *tensor.Tensor
}

// Numel is the number of elements of the parameter.
func (p *Param) Numel() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// Builder collects parameter declarations. Modules declare parameters in
// forward order; Build lays them out in reverse (the order backward finishes
// their gradients). A Builder made by Scope shares its parent's list and
// prefixes every name it declares.
type Builder struct {
	prefix string
	list   *declList
}

type declList struct {
	params []*Param
	names  map[string]bool
	built  bool
	errs   []error
}

// NewBuilder starts an empty declaration list.
func NewBuilder() *Builder {
	return &Builder{list: &declList{names: map[string]bool{}}}
}

// Scope returns a Builder that declares into the same list with prefix
// prepended to every name: pb.Scope("encoder.").Scope("blocks.0.").
func (pb *Builder) Scope(prefix string) *Builder {
	return &Builder{prefix: pb.prefix + prefix, list: pb.list}
}

// Prefix is the scope prefix of this Builder.
func (pb *Builder) Prefix() string { return pb.prefix }

// Param declares a parameter of the given shape. decay is forced to false for
// parameters of rank < 2. A duplicate name or a declaration after Build is
// reported by Build.
func (pb *Builder) Param(name string, decay bool, shape ...int) *Param {
	l := pb.list
	full := pb.prefix + name
	p := &Param{Name: full, Shape: append([]int(nil), shape...), Decay: decay && len(shape) >= 2}
	switch {
	case l.built:
		l.errs = append(l.errs, fmt.Errorf("nn: parameter %q declared after Build", full))
	case l.names[full]:
		l.errs = append(l.errs, fmt.Errorf("nn: parameter %q declared twice", full))
	default:
		for _, d := range shape {
			if d <= 0 {
				l.errs = append(l.errs, fmt.Errorf("nn: parameter %q has shape %v", full, shape))
			}
		}
	}
	l.names[full] = true
	l.params = append(l.params, p)
	return p
}

// Build allocates one float32 buffer of values and one of gradients on b
// (both zeroed) and binds every declared Param's W and G. The last declared
// parameter is at offset 0: backward produces gradients in reverse declaration
// order, so gradient buckets taken from offset 0 become final first.
func (pb *Builder) Build(b tensor.Backend) (*Arena, error) {
	l := pb.list
	if len(l.errs) > 0 {
		return nil, l.errs[0]
	}
	if l.built {
		return nil, fmt.Errorf("nn: Build called twice")
	}
	l.built = true
	a := &Arena{byName: make(map[string]*Param, len(l.params))}
	off := 0
	for i := len(l.params) - 1; i >= 0; i-- {
		p := l.params[i]
		p.Offset = off
		off += p.Numel()
		a.params = append(a.params, p)
		a.byName[p.Name] = p
	}
	a.n = off
	a.Values = b.New(tensor.Float32, max(off, 1)).View(0, off)
	a.Grads = b.New(tensor.Float32, max(off, 1)).View(0, off)
	for _, p := range a.params {
		p.W = a.Values.View(p.Offset, p.Shape...)
		p.G = a.Grads.View(p.Offset, p.Shape...)
	}
	return a, nil
}

// Arena is the built parameter store of one or more models: Values and Grads
// are flat float32 tensors of Len() elements with the same layout.
type Arena struct {
	Values, Grads *tensor.Tensor
	params        []*Param // in layout order (increasing Offset)
	byName        map[string]*Param
	n             int
}

// Len is the number of float32 elements in Values (and in Grads).
func (a *Arena) Len() int { return a.n }

// Params lists the parameters in layout order (increasing offset), which is
// the reverse of declaration order.
func (a *Arena) Params() []*Param { return a.params }

// Lookup returns the parameter with the given full name, or nil.
func (a *Arena) Lookup(name string) *Param { return a.byName[name] }

// Range returns the contiguous element range [offset, offset+n) covered by the
// parameters whose names start with prefix. It fails when none match or when
// other parameters lie inside the range (a scope declared in pieces).
func (a *Arena) Range(prefix string) (offset, n int, err error) {
	first, last := -1, -1
	for i, p := range a.params {
		if strings.HasPrefix(p.Name, prefix) {
			if first < 0 {
				first = i
			} else if last != i-1 {
				return 0, 0, fmt.Errorf("nn: parameters with prefix %q are not contiguous (%q lies between)", prefix, a.params[last+1].Name)
			}
			last = i
		}
	}
	if first < 0 {
		return 0, 0, fmt.Errorf("nn: no parameter has prefix %q", prefix)
	}
	end := a.params[last].Offset + a.params[last].Numel()
	return a.params[first].Offset, end - a.params[first].Offset, nil
}

// ValuesOf and GradsOf return the flat views of Values and Grads over
// Range(prefix): the EMA target encoder's arena (built from the same
// declarations) lines up element for element with ValuesOf("encoder.").
func (a *Arena) ValuesOf(prefix string) (*tensor.Tensor, error) {
	off, n, err := a.Range(prefix)
	if err != nil {
		return nil, err
	}
	return a.Values.View(off, n), nil
}

// GradsOf is ValuesOf for the gradient buffer.
func (a *Arena) GradsOf(prefix string) (*tensor.Tensor, error) {
	off, n, err := a.Range(prefix)
	if err != nil {
		return nil, err
	}
	return a.Grads.View(off, n), nil
}

// SameLayout checks that the parameters of a under prefixA and those of o
// under prefixB have the same names (after the prefixes), shapes and relative
// offsets, so the two ranges can be combined elementwise (EMA, copy).
func (a *Arena) SameLayout(prefixA string, o *Arena, prefixB string) error {
	pick := func(ar *Arena, prefix string) ([]*Param, int, error) {
		off, _, err := ar.Range(prefix)
		var ps []*Param
		for _, p := range ar.params {
			if strings.HasPrefix(p.Name, prefix) {
				ps = append(ps, p)
			}
		}
		return ps, off, err
	}
	pa, offA, err := pick(a, prefixA)
	if err != nil {
		return err
	}
	pbs, offB, err := pick(o, prefixB)
	if err != nil {
		return err
	}
	if len(pa) != len(pbs) {
		return fmt.Errorf("nn: %d parameters under %q, %d under %q", len(pa), prefixA, len(pbs), prefixB)
	}
	for i := range pa {
		x, y := pa[i], pbs[i]
		if x.Name[len(prefixA):] != y.Name[len(prefixB):] || x.Offset-offA != y.Offset-offB || !slices.Equal(x.Shape, y.Shape) {
			return fmt.Errorf("nn: layouts differ at %q %v (+%d) vs %q %v (+%d)", x.Name, x.Shape, x.Offset-offA, y.Name, y.Shape, y.Offset-offB)
		}
	}
	return nil
}

// Names returns the parameter names sorted alphabetically (for messages and
// checkpoint name tables that want a stable order independent of layout).
func (a *Arena) Names() []string {
	names := make([]string, 0, len(a.params))
	for _, p := range a.params {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

// ZeroGrad sets every gradient to zero.
func (a *Arena) ZeroGrad(b tensor.Backend) {
	if a.n > 0 {
		b.Fill(a.Grads, 0)
	}
}
