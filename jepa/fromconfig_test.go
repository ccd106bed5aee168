package jepa

import (
	"testing"

	"github.com/hjepa-go/hjepa/config"
)

// The encoder_type presets (config's one table) resolve to I-JEPA's ViT
// sizes, with the MLP width Python's int(D * mlp_ratio) gives, and
// validate together with the default predictor.
func TestPresetsResolve(t *testing.T) {
	want := map[string][4]int{ // dim, depth, heads, MLP hidden
		"vit_tiny": {192, 12, 3, 768}, "vit_small": {384, 12, 6, 1536}, "vit_base": {768, 12, 12, 3072},
		"vit_large": {1024, 24, 16, 4096}, "vit_huge_patch14": {1280, 32, 16, 5120}, "vit_giant_patch14": {1408, 40, 16, 6144},
	}
	for name, w := range want {
		c := config.Default()
		c.Model.EncoderType = name
		c.Data.ImageSize, c.Data.Channels = 224, 3
		mc, err := NewModelConfig(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		e := mc.Encoder
		if got := [4]int{e.Dim, e.Depth, e.Heads, e.Hidden()}; got != w {
			t.Errorf("%s: %v, want %v", name, got, w)
		}
	}
	c := config.Default()
	c.Model.EncoderType = "vit_enormous"
	if _, err := NewModelConfig(c); err == nil {
		t.Error("unknown encoder_type accepted")
	}
}
