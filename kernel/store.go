package kernel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The Store is the reference kernel's own state format (VatRecord, Entry), so it stays in this
// package: bbolt is pure Go, and nothing outside the kernel reads it.
//
// Buckets of the store:
//
//	meta        "crank" → uint64 (big endian): cranks committed so far
//	vats        vat id  → JSON VatRecord
//	transcripts vat id  → nested bucket: seq (uint64 big endian) → JSON Entry
var (
	bucketMeta        = []byte("meta")
	bucketVats        = []byte("vats")
	bucketTranscripts = []byte("transcripts")
	keyCrank          = []byte("crank")
)

// VatRecord is a vat's committed state.
type VatRecord struct {
	// State is the worker's last reply (the test worker's running sum): what replay must rebuild.
	State string `json:"state"`
	// Deliveries is the transcript length.
	Deliveries uint64 `json:"deliveries"`
	// Terminated is set, with Reason and the crank that did it, when the vat was terminated.
	Terminated bool   `json:"terminated,omitempty"`
	Reason     string `json:"reason,omitempty"`
	AtCrank    uint64 `json:"atCrank,omitempty"`
}

// Entry is one delivery in a vat's transcript with the worker's reply.
type Entry struct {
	Delivery string `json:"delivery"`
	Reply    string `json:"reply"`
}

// Store is the kernel's transactional state.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (or creates) the store at path.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("store %s: locked by another kernel process", path)
		}
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketVats, bucketTranscripts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store %s: init buckets: %w", path, err), db.Close())
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64b(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// Crank is the number of cranks committed.
func (s *Store) Crank() (n uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = u64(tx.Bucket(bucketMeta).Get(keyCrank))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: read crank: %w", err)
	}
	return n, nil
}

// Vats returns every vat's record, by id.
func (s *Store) Vats() (map[string]VatRecord, error) {
	out := map[string]VatRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVats).ForEach(func(k, v []byte) error {
			var r VatRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("vat %s: %w", k, err)
			}
			out[string(k)] = r
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: read vats: %w", err)
	}
	return out, nil
}

// Transcript returns a vat's deliveries in order.
func (s *Store) Transcript(vat string) ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTranscripts).Bucket([]byte(vat))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry %d: %w", u64(k), err)
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: read vat %s's transcript: %w", vat, err)
	}
	return out, nil
}

// EnsureVat creates an empty vat record if there is none (a committed crank of its own).
func (s *Store) EnsureVat(vat string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		vats := tx.Bucket(bucketVats)
		if vats.Get([]byte(vat)) != nil {
			return nil
		}
		data, err := json.Marshal(VatRecord{})
		if err != nil {
			return err
		}
		return vats.Put([]byte(vat), data)
	})
	if err != nil {
		return fmt.Errorf("store: create vat %s: %w", vat, err)
	}
	return nil
}

// update runs f on a vat's record and bumps the crank counter, in one transaction.
func (s *Store) update(vat string, f func(tx *bolt.Tx, r *VatRecord, crank uint64) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		vats := tx.Bucket(bucketVats)
		var r VatRecord
		if data := vats.Get([]byte(vat)); data != nil {
			if err := json.Unmarshal(data, &r); err != nil {
				return fmt.Errorf("vat %s: %w", vat, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		crank := u64(meta.Get(keyCrank)) + 1
		if err := f(tx, &r, crank); err != nil {
			return err
		}
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := vats.Put([]byte(vat), data); err != nil {
			return err
		}
		return meta.Put(keyCrank, u64b(crank))
	})
}

// CommitDelivery commits one crank: the transcript entry, the vat's new state and the crank
// counter, atomically.
func (s *Store) CommitDelivery(vat string, e Entry) error {
	err := s.update(vat, func(tx *bolt.Tx, r *VatRecord, _ uint64) error {
		if r.Terminated {
			return fmt.Errorf("vat %s is terminated", vat)
		}
		tb, err := tx.Bucket(bucketTranscripts).CreateBucketIfNotExists([]byte(vat))
		if err != nil {
			return err
		}
		r.Deliveries++
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := tb.Put(u64b(r.Deliveries), data); err != nil {
			return err
		}
		r.State = e.Reply
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: commit crank for vat %s: %w", vat, err)
	}
	return nil
}

// Terminate commits a vat's termination with its reason (a deterministic outcome).
func (s *Store) Terminate(vat, reason string) error {
	err := s.update(vat, func(_ *bolt.Tx, r *VatRecord, crank uint64) error {
		r.Terminated, r.Reason, r.AtCrank = true, reason, crank
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: terminate vat %s: %w", vat, err)
	}
	return nil
}

// Dump is every key and value of the store, for comparing states byte for byte.
func (s *Store) Dump() ([]byte, error) {
	var buf bytes.Buffer
	err := s.db.View(func(tx *bolt.Tx) error {
		var walk func(prefix string, b *bolt.Bucket) error
		walk = func(prefix string, b *bolt.Bucket) error {
			var keys []string
			vals := map[string][]byte{}
			nested := map[string]bool{}
			err := b.ForEach(func(k, v []byte) error {
				keys = append(keys, string(k))
				if v == nil {
					nested[string(k)] = true
				} else {
					vals[string(k)] = append([]byte(nil), v...)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("%s: %w", prefix, err)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if nested[k] {
					if err := walk(prefix+k+"/", b.Bucket([]byte(k))); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(&buf, "%q=%q\n", prefix+k, vals[k])
			}
			return nil
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return walk(string(name)+"/", b)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: dump: %w", err)
	}
	return buf.Bytes(), nil
}
