package tensor

// Workspace is a grow-only activation buffer: each Get returns a view of the
// requested shape over storage that is reallocated only when a step needs more
// than any step before. Modules keep one per saved activation so a training
// loop allocates nothing after its first (largest) step.
type Workspace struct {
	storage *Tensor
	// shared, when set, is the workspace whose storage this one uses
	// (Share).
	shared *Workspace
}

// Share makes w use o's storage from now on, releasing its own: for
// modules whose outputs are dead once the next module has read them (a
// forward pass without backward), one buffer then serves all of them
// instead of one each.
func (w *Workspace) Share(o *Workspace) {
	for o.shared != nil {
		o = o.shared
	}
	if o == w {
		return
	}
	w.storage, w.shared = nil, o
}

// Get returns a view of the given shape. Its contents are whatever the last
// user left there; callers overwrite it (or Fill it) before reading.
func (w *Workspace) Get(b Backend, shape ...int) *Tensor {
	if w.shared != nil {
		return w.shared.Get(b, shape...)
	}
	n := numel(shape)
	if w.storage == nil || w.storage.Numel() < n {
		// A quarter of headroom: masks change the context length every
		// step, and growing by exactly what one step needs would reallocate
		// (and page-fault) on each new maximum.
		if w.storage != nil {
			n = max(n, w.storage.Numel()+w.storage.Numel()/4)
		}
		w.storage = b.New(Float32, n)
	}
	return w.storage.View(0, shape...)
}
