package worker

import (
	"testing"

	"google.golang.org/protobuf/proto"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// FuzzAssignment: any RegisterResponse bytes from the coordinator are
// refused by checkAssignment or safe for what generation does with them
// (the ring neighbour lookup); a world size of 0 used to divide by zero.
func FuzzAssignment(f *testing.F) {
	ok := &hjepav1.RegisterResponse{RunId: "r", Generation: 1, Rank: 1, WorldSize: 2,
		Peers: []*hjepav1.Peer{{Rank: 0, Address: "a:1"}, {Rank: 1, Address: "b:1"}}}
	for _, a := range []*hjepav1.RegisterResponse{
		ok,
		{RunId: "r", Generation: 1, Rank: 0, WorldSize: 0},
		{RunId: "r", Generation: 1, Rank: 3, WorldSize: 2, Peers: ok.Peers},
		{RunId: "r", Generation: 1, Rank: -1, WorldSize: 2, Peers: ok.Peers},
		{RunId: "r", Generation: 1, Rank: 1, WorldSize: 3, Peers: ok.Peers},
		{JobEnd: &hjepav1.JobEnd{ExitCode: 1, Message: "over"}},
	} {
		b, err := proto.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a hjepav1.RegisterResponse
		if proto.Unmarshal(data, &a) != nil {
			return
		}
		if err := checkAssignment(&a); err != nil {
			if err.Error() == "" {
				t.Fatal("refusal without a reason")
			}
			return
		}
		rank := int(a.Rank)
		if next := a.Peers[(rank+1)%int(a.WorldSize)]; next.Address == "" {
			t.Fatalf("accepted assignment %v has a peer without an address", &a)
		}
	})
}
