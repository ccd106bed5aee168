package sgemm

// packA copies op(A)[i0:i0+mc, p0:p0+kc] into dst as MR-row panels: panel q
// holds rows i0+q*mr.. as kc groups of mr floats (one column of the panel per
// group), rows past mc zero-filled so the micro-kernel never branches.
func packA(transA bool, a []float32, lda, i0, mc, p0, kc, mr int, dst []float32) {
	for q := 0; q*mr < mc; q++ {
		rows := min(mr, mc-q*mr)
		panel := dst[q*kc*mr : (q+1)*kc*mr]
		i := i0 + q*mr
		if transA {
			// A is [k, m]: each panel column is a contiguous run of a row of A.
			if rows == 12 && mr == 12 {
				// One assembly loop per panel: a copy() or a [12]float32
				// assignment per column both call runtime.memmove (measured:
				// 5% of the H-JEPA step).
				packATPanel12(a, lda, i, p0, kc, panel)
				continue
			}
			if rows == 6 && mr == 6 {
				packATPanel6(a, lda, i, p0, kc, panel)
				continue
			}
			for p := 0; p < kc; p++ {
				src := a[(p0+p)*lda+i : (p0+p)*lda+i+rows]
				d := panel[p*mr : p*mr+mr]
				copy(d, src)
				clear(d[rows:])
			}
			continue
		}
		if rows == mr {
			switch mr {
			case 12:
				packAPanel12(a, lda, i, p0, kc, panel)
				continue
			case 6:
				packAPanel6(a, lda, i, p0, kc, panel)
				continue
			case 4:
				packAPanel4(a, lda, i, p0, kc, panel)
				continue
			}
		}
		for r := 0; r < rows; r++ {
			src := a[(i+r)*lda+p0 : (i+r)*lda+p0+kc]
			for p, v := range src {
				panel[p*mr+r] = v
			}
		}
		if rows < mr {
			for p := 0; p < kc; p++ {
				clear(panel[p*mr+rows : p*mr+mr])
			}
		}
	}
}

// packB copies op(B)[p0:p0+kc, j0:j0+nc] into dst as NR-column panels: panel q
// holds columns j0+q*nr.. as kc groups of nr floats (one row of the panel per
// group), columns past nc zero-filled.
func packB(transB bool, b []float32, ldb, p0, kc, j0, nc, nr int, dst []float32) {
	for q := 0; q*nr < nc; q++ {
		cols := min(nr, nc-q*nr)
		panel := dst[q*kc*nr : (q+1)*kc*nr]
		j := j0 + q*nr
		if !transB {
			// B is [k, n]: each panel row is a contiguous run of a row of B.
			if cols == nr && kc > 0 && packBRows(b, p0*ldb+j, ldb, kc, nr, panel) {
				continue
			}
			for p := 0; p < kc; p++ {
				src := b[(p0+p)*ldb+j : (p0+p)*ldb+j+cols]
				d := panel[p*nr : p*nr+nr]
				copy(d, src)
				clear(d[cols:])
			}
			continue
		}
		c := 0
		for ; c+8 <= cols; c += 8 {
			packBTCols8(b, ldb, j+c, p0, kc, nr, c, panel)
		}
		for ; c < cols; c++ {
			src := b[(j+c)*ldb+p0 : (j+c)*ldb+p0+kc]
			for p, v := range src {
				panel[p*nr+c] = v
			}
		}
		if cols < nr {
			for p := 0; p < kc; p++ {
				clear(panel[p*nr+cols : p*nr+nr])
			}
		}
	}
}
