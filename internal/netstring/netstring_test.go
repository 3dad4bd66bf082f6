package netstring

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadSequence(t *testing.T) {
	r := NewReader(strings.NewReader("5:hello,0:,3:a,b,"), 16)
	for _, want := range []string{"hello", "", "a,b"} {
		got, err := r.Read()
		if err != nil || string(got) != want {
			t.Fatalf("Read = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("after the last message: %v, want io.EOF", err)
	}
}

func TestReadErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{"x:abc,", ErrBadLength},
		{":abc,", ErrBadLength},
		{"03:abc,", ErrBadLength},
		{"17:aaaaaaaaaaaaaaaaa,", ErrTooLong},
		{"99999999999999999999:", ErrTooLong},
		{"3:abc;", ErrNoComma},
		{"5:abc", ErrTruncated},
		{"3:abc", ErrTruncated},
		{"12", ErrTruncated},
	} {
		_, err := NewReader(strings.NewReader(c.in), 16).Read()
		if !errors.Is(err, c.want) {
			t.Errorf("%q: err %v, want %v", c.in, err, c.want)
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	var b bytes.Buffer
	for _, m := range []string{"ping", "", "add:5"} {
		if err := Write(&b, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if b.String() != "4:ping,0:,5:add:5," {
		t.Fatalf("wrote %q", b.String())
	}
}

func FuzzRead(f *testing.F) {
	for _, s := range []string{"5:hello,", "0:,", "3:ab", "99999999999:", "1:a;", "x", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 64
		r := NewReader(bytes.NewReader(data), max)
		for {
			msg, err := r.Read()
			if err != nil {
				return
			}
			if len(msg) > max {
				t.Fatalf("message of %d bytes over the maximum %d", len(msg), max)
			}
			var b bytes.Buffer
			Write(&b, msg)
			again, err := NewReader(&b, max).Read()
			if err != nil || !bytes.Equal(again, msg) {
				t.Fatalf("round trip of %q: %q, %v", msg, again, err)
			}
		}
	})
}
