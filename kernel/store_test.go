package kernel

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestFailedCommitLeavesStoreIdentical(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	st, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := st.CommitDelivery("v1", Entry{Delivery: "add:1", Reply: "sum:1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Terminate("v1", "test"); err != nil {
		t.Fatal(err)
	}
	before, err := st.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CommitDelivery("v1", Entry{Delivery: "add:2", Reply: "sum:3"}); err == nil {
		t.Fatal("commit to a terminated vat succeeded")
	}
	after, err := st.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("a failed commit changed the store:\n%s\n---\n%s", before, after)
	}
	if !bytes.Contains(before, []byte(`"transcripts/v1/`)) || !bytes.Contains(before, []byte(`terminated`)) {
		t.Fatalf("dump does not show the committed content:\n%s", before)
	}
}
