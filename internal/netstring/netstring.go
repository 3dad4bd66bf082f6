// Package netstring reads and writes netstrings ("5:hello,"), the framing of the kernel↔worker
// protocol on fds 3 and 4. The reader is bounded: it never allocates more than its maximum
// message size, whatever length prefix it is sent.
package netstring

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Errors the Reader returns (wrapped with detail).
var (
	ErrTooLong   = errors.New("netstring: length over the maximum")
	ErrBadLength = errors.New("netstring: bad length prefix")
	ErrNoComma   = errors.New("netstring: missing trailing comma")
	ErrTruncated = errors.New("netstring: truncated")
)

// maxDigits bounds the length prefix so a stream of digits cannot run on.
const maxDigits = 10

// Reader reads netstrings of at most Max bytes.
type Reader struct {
	r   *bufio.Reader
	max int
}

// NewReader reads netstrings from r, refusing any longer than max bytes.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReader(r), max: max}
}

// Read returns the next message. io.EOF means the stream ended cleanly between messages.
func (nr *Reader) Read() ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := nr.r.ReadByte()
		if err != nil {
			if err == io.EOF && digits == 0 {
				return nil, io.EOF
			}
			if err == io.EOF {
				return nil, fmt.Errorf("%w: in the length prefix", ErrTruncated)
			}
			return nil, err
		}
		if c == ':' {
			if digits == 0 {
				return nil, fmt.Errorf("%w: empty", ErrBadLength)
			}
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: byte %q", ErrBadLength, c)
		}
		if digits > 0 && n == 0 {
			return nil, fmt.Errorf("%w: leading zero", ErrBadLength)
		}
		digits++
		if digits > maxDigits {
			return nil, fmt.Errorf("%w: more than %d digits", ErrTooLong, maxDigits)
		}
		n = n*10 + int(c-'0')
		if n > nr.max {
			return nil, fmt.Errorf("%w: %d > %d bytes", ErrTooLong, n, nr.max)
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(nr.r, buf); err != nil {
		return nil, fmt.Errorf("%w: want %d bytes: %v", ErrTruncated, n, err)
	}
	c, err := nr.r.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("%w: before the comma: %v", ErrTruncated, err)
	}
	if c != ',' {
		return nil, fmt.Errorf("%w: got %q", ErrNoComma, c)
	}
	return buf, nil
}

// Append appends msg as a netstring to dst.
func Append(dst, msg []byte) []byte {
	dst = fmt.Appendf(dst, "%d:", len(msg))
	dst = append(dst, msg...)
	return append(dst, ',')
}

// Write writes msg as one netstring in a single Write call.
func Write(w io.Writer, msg []byte) error {
	_, err := w.Write(Append(nil, msg))
	return err
}
