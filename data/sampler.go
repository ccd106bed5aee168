package data

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
)

// DistributedSampler has torch.utils.data.DistributedSampler's semantics:
//
//   - the epoch's order is arange(N), or, when Shuffle, a permutation drawn
//     from a generator seeded by Seed + epoch (our own PCG + Fisher-Yates,
//     not torch's randperm, so the permutation itself differs from torch's);
//   - without DropLast the order is padded by repeating it from the start
//     until its length is a multiple of Replicas; with DropLast the tail is
//     cut to a multiple instead;
//   - rank r takes order[r::Replicas].
//
// The permutation uses only PCG-DXSM outputs and our own bounded draws, so it
// is stable across Go releases (checkpoints name positions in it).
type DistributedSampler struct {
	N        int
	Replicas int
	Rank     int
	Shuffle  bool
	Seed     int64
	DropLast bool

	epoch int
}

// NewDistributedSampler checks its arguments and returns a sampler at epoch 0.
func NewDistributedSampler(n, replicas, rank int, shuffle bool, seed int64, dropLast bool) (*DistributedSampler, error) {
	if n <= 0 {
		return nil, fmt.Errorf("sampler: dataset is empty")
	}
	if replicas <= 0 || rank < 0 || rank >= replicas {
		return nil, fmt.Errorf("sampler: rank %d must be in [0, %d)", rank, replicas)
	}
	if dropLast && n < replicas {
		return nil, fmt.Errorf("sampler: drop_last with %d samples and %d replicas leaves nothing", n, replicas)
	}
	return &DistributedSampler{N: n, Replicas: replicas, Rank: rank, Shuffle: shuffle, Seed: seed, DropLast: dropLast}, nil
}

// SetEpoch selects the epoch whose order Indices returns (torch's set_epoch).
func (s *DistributedSampler) SetEpoch(epoch int) { s.epoch = epoch }

// Epoch is the current epoch.
func (s *DistributedSampler) Epoch() int { return s.epoch }

// NumSamples is the length of one rank's shard (torch's num_samples).
func (s *DistributedSampler) NumSamples() int {
	if s.DropLast && s.N%s.Replicas != 0 {
		return (s.N - s.Replicas + s.Replicas - 1) / s.Replicas // ceil((N - R) / R)
	}
	return (s.N + s.Replicas - 1) / s.Replicas
}

// Indices returns this rank's dataset indices for the current epoch.
func (s *DistributedSampler) Indices() []int {
	order := make([]int, s.N)
	for i := range order {
		order[i] = i
	}
	if s.Shuffle {
		shuffleInts(order, rand.NewPCG(uint64(s.Seed+int64(s.epoch)), 0x6a09e667f3bcc909))
	}
	total := s.NumSamples() * s.Replicas
	if total > len(order) {
		pad := total - len(order)
		for i := 0; i < pad; i++ {
			order = append(order, order[i%s.N])
		}
	} else {
		order = order[:total]
	}
	out := make([]int, 0, s.NumSamples())
	for i := s.Rank; i < total; i += s.Replicas {
		out = append(out, order[i])
	}
	return out
}

// shuffleInts is Fisher-Yates with Lemire's unbiased bounded draws.
func shuffleInts(a []int, src *rand.PCG) {
	for i := len(a) - 1; i > 0; i-- {
		j := int(boundedUint64(src, uint64(i+1)))
		a[i], a[j] = a[j], a[i]
	}
}

// boundedUint64 returns a uniform value in [0, n) (Lemire 2019).
func boundedUint64(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}
