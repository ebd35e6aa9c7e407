package qcow2

import (
	"errors"
	"fmt"
)

// This file is a plain deflate decoder (RFC 1951) for the tests: unlike
// compress/flate it reports how far back each match reaches, which is
// what QEMU's 4 KiB window limits.

type bits struct {
	in     []byte
	pos    int
	bitbuf uint32
	bitcnt uint
}

var errShort = errors.New("deflate: input ends early")

func (b *bits) need(n uint) (uint32, error) {
	v := b.bitbuf
	for b.bitcnt < n {
		if b.pos >= len(b.in) {
			return 0, errShort
		}
		v |= uint32(b.in[b.pos]) << b.bitcnt
		b.pos++
		b.bitcnt += 8
	}
	b.bitbuf = v >> n
	b.bitcnt -= n
	return v & (1<<n - 1), nil
}

type huffman struct {
	count  [16]int
	symbol []int
}

func newHuffman(lengths []int) huffman {
	var h huffman
	for _, l := range lengths {
		h.count[l]++
	}
	// Symbols in order of code length, then value (canonical codes).
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	h.symbol = make([]int, len(lengths))
	for s, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = s
			offs[l]++
		}
	}
	return h
}

func (b *bits) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		v, err := b.need(1)
		if err != nil {
			return 0, err
		}
		code |= int(v)
		count := h.count[l]
		if code-count < first {
			return h.symbol[index+(code-first)], nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, errors.New("deflate: bad code")
}

var (
	lbase = []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lext  = []uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	dbase = []int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	dext  = []uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	order = []int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// inflate decodes a raw deflate stream and returns its output and the
// longest distance any match reached back.
func inflate(in []byte) (out []byte, farthest int, err error) {
	b := &bits{in: in}
	for {
		last, err := b.need(1)
		if err != nil {
			return nil, 0, err
		}
		typ, err := b.need(2)
		if err != nil {
			return nil, 0, err
		}
		switch typ {
		case 0:
			b.bitbuf, b.bitcnt = 0, 0
			if b.pos+4 > len(in) {
				return nil, 0, errShort
			}
			n := int(in[b.pos]) | int(in[b.pos+1])<<8
			b.pos += 4
			if b.pos+n > len(in) {
				return nil, 0, errShort
			}
			out = append(out, in[b.pos:b.pos+n]...)
			b.pos += n
		case 1, 2:
			var lit, dist huffman
			if typ == 1 {
				l := make([]int, 288)
				for i := range l {
					switch {
					case i < 144:
						l[i] = 8
					case i < 256:
						l[i] = 9
					case i < 280:
						l[i] = 7
					default:
						l[i] = 8
					}
				}
				d := make([]int, 30)
				for i := range d {
					d[i] = 5
				}
				lit, dist = newHuffman(l), newHuffman(d)
			} else {
				if lit, dist, err = b.dynamic(); err != nil {
					return nil, 0, err
				}
			}
			for {
				sym, err := b.decode(&lit)
				if err != nil {
					return nil, 0, err
				}
				if sym < 256 {
					out = append(out, byte(sym))
					continue
				}
				if sym == 256 {
					break
				}
				sym -= 257
				if sym >= 29 {
					return nil, 0, errors.New("deflate: bad length symbol")
				}
				e, err := b.need(lext[sym])
				if err != nil {
					return nil, 0, err
				}
				length := lbase[sym] + int(e)
				ds, err := b.decode(&dist)
				if err != nil {
					return nil, 0, err
				}
				if ds >= 30 {
					return nil, 0, errors.New("deflate: bad distance symbol")
				}
				e, err = b.need(dext[ds])
				if err != nil {
					return nil, 0, err
				}
				d := dbase[ds] + int(e)
				if d > len(out) {
					return nil, 0, fmt.Errorf("deflate: distance %d before the start", d)
				}
				farthest = max(farthest, d)
				for range length {
					out = append(out, out[len(out)-d])
				}
			}
		default:
			return nil, 0, errors.New("deflate: block type 3")
		}
		if last == 1 {
			return out, farthest, nil
		}
	}
}

func (b *bits) dynamic() (huffman, huffman, error) {
	var lit, dist huffman
	v, err := b.need(14)
	if err != nil {
		return lit, dist, err
	}
	nlen, ndist, ncode := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	lengths := make([]int, 19)
	for i := 0; i < ncode; i++ {
		l, err := b.need(3)
		if err != nil {
			return lit, dist, err
		}
		lengths[order[i]] = int(l)
	}
	lencode := newHuffman(lengths)
	all := make([]int, 0, nlen+ndist)
	for len(all) < nlen+ndist {
		sym, err := b.decode(&lencode)
		if err != nil {
			return lit, dist, err
		}
		if sym < 16 {
			all = append(all, sym)
			continue
		}
		rep, prev := 0, 0
		switch sym {
		case 16:
			if len(all) == 0 {
				return lit, dist, errors.New("deflate: repeat with nothing before")
			}
			prev = all[len(all)-1]
			e, err := b.need(2)
			if err != nil {
				return lit, dist, err
			}
			rep = 3 + int(e)
		case 17:
			e, err := b.need(3)
			if err != nil {
				return lit, dist, err
			}
			rep = 3 + int(e)
		default:
			e, err := b.need(7)
			if err != nil {
				return lit, dist, err
			}
			rep = 11 + int(e)
		}
		for range rep {
			all = append(all, prev)
		}
	}
	return newHuffman(all[:nlen]), newHuffman(all[nlen : nlen+ndist]), nil
}
