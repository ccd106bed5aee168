module github.com/hjepa-go/hjepa

go 1.26
