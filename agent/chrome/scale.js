// Scaling the captured tab to the sent picture so that a scrolled page moves whole rows,
// and finding such moves (pure: arrays in, arrays out). See tiles.js for why.
//
// Units: in a picture of `height` rows scaled from `srcHeight` captured rows, one captured
// row is `height` units and one sent row `srcHeight` units (both integers, so every weight
// is an exact integer and the same page rows always give the same sent row). The sent
// rows' boundaries are at `phase + n * srcHeight` units from the tab's top, 0 < phase <=
// srcHeight: row 0 is the part above the first boundary (all of a row when phase is
// srcHeight), and what is left below the last whole row (less than one sent row) is not
// shown. A scroll by dy captured rows moves the boundaries by dy * height units with the
// page (nextPhase).

/** Right-edge columns left out of row comparisons (a scrollbar's thumb moves there), in
 * pixels of the sent picture, as the desktop agent's find_scroll does. */
export const SCROLLBAR = 16;

/** The phase after the page scrolled by `dy` captured rows (new row y = old row y + dy). */
export function nextPhase(phase, dy, srcHeight, height) {
  const p = (((phase - dy * height) % srcHeight) + srcHeight) % srcHeight;
  return p === 0 ? srcHeight : p;
}

let scratch = null; // reused accumulators (one picture's worth of Float64)

/**
 * Area average of an RGBA picture `src` (srcWidth × srcHeight, Uint8ClampedArray or
 * Uint8Array) into width × height (no larger), rows placed by `phase` (see above).
 * Returns a new Uint8ClampedArray of RGBA, alpha 255.
 */
export function scalePicture(src, srcWidth, srcHeight, width, height, phase = srcHeight) {
  if (width > srcWidth || height > srcHeight) throw new RangeError("scalePicture only shrinks");
  if (!(phase > 0 && phase <= srcHeight) || !Number.isInteger(phase)) {
    throw new RangeError(`phase must be an integer in 1..${srcHeight}, got ${phase}`);
  }
  const out = new Uint8ClampedArray(width * height * 4);
  if (width === srcWidth && height === srcHeight) {
    out.set(src);
    return out;
  }
  // Each captured column x gives weight `wa` to sent column `col[x]` and the rest of its
  // `width` units to the next one.
  const col = new Int32Array(srcWidth);
  const wa = new Int32Array(srcWidth);
  for (let x = 0; x < srcWidth; x += 1) {
    const u = x * width;
    const c = Math.floor(u / srcWidth);
    col[x] = c * 3;
    wa[x] = Math.min(width, (c + 1) * srcWidth - u);
  }
  const cells = width * 3;
  if (!scratch || scratch.acc.length < cells * height) {
    scratch = { acc: new Float64Array(cells * height), line: new Int32Array(cells + 3) };
  }
  const { acc, line } = scratch;
  acc.fill(0, 0, cells * height);
  const weight = new Float64Array(height);
  const pixels = new Uint32Array(src.buffer, src.byteOffset, srcWidth * srcHeight);
  for (let y = 0; y < srcHeight; y += 1) {
    let i = y * srcWidth;
    // a row like the one above (the paper between lines of text) has the same sums
    let same = y > 0;
    for (let k = i, end = i + srcWidth; same && k < end; k += 1) same = pixels[k] === pixels[k - srcWidth];
    if (!same) line.fill(0);
    for (let x = 0; !same && x < srcWidth; x += 1, i += 1) {
      const c = col[x];
      const a = wa[x];
      const v = pixels[i]; // RGBA in memory: little-endian, R in the low byte
      const r = v & 255;
      const g = (v >>> 8) & 255;
      const b = (v >>> 16) & 255;
      line[c] += a * r;
      line[c + 1] += a * g;
      line[c + 2] += a * b;
      const rest = width - a;
      if (rest) {
        line[c + 3] += rest * r;
        line[c + 4] += rest * g;
        line[c + 5] += rest * b;
      }
    }
    // captured row y covers units [y*height, (y+1)*height): at most two sent rows
    const u = y * height;
    const row = Math.floor((u - phase) / srcHeight) + 1;
    if (row >= height) break; // below the last whole row: not shown
    const w0 = Math.min(height, phase + row * srcHeight - u);
    addLine(acc, line, row * cells, cells, w0);
    weight[row] += w0;
    if (w0 < height && row + 1 < height) {
      addLine(acc, line, (row + 1) * cells, cells, height - w0);
      weight[row + 1] += height - w0;
    }
  }
  for (let r = 0; r < height; r += 1) {
    const den = weight[r] * srcWidth;
    let o = r * width * 4;
    let k = r * cells;
    for (let c = 0; c < width; c += 1, o += 4, k += 3) {
      out[o] = Math.round(acc[k] / den);
      out[o + 1] = Math.round(acc[k + 1] / den);
      out[o + 2] = Math.round(acc[k + 2] / den);
      out[o + 3] = 255;
    }
  }
  return out;
}

function addLine(acc, line, at, cells, w) {
  for (let k = 0; k < cells; k += 1) acc[at + k] += w * line[k];
}

/** A 32-bit hash of each row's first `cols` pixels (`pixels`: one Uint32 a pixel). */
export function rowHashes(pixels, width, height, cols = width) {
  const out = new Uint32Array(height);
  for (let y = 0; y < height; y += 1) {
    let h = 0x811c9dc5;
    const end = y * width + cols;
    for (let i = y * width; i < end; i += 1) h = Math.imul(h ^ pixels[i], 0x01000193) ^ (h >>> 15);
    out[y] = h;
  }
  return out;
}

/**
 * [y0, y1, dy] when rows y0..y1 of the new picture are rows y0+dy..y1+dy of the old one,
 * for a band of at least a quarter of the picture; else null. `oldRows`, `newRows`: row
 * hashes (rowHashes); `same(yNew, yOld)` says whether two rows are equal (default: their
 * hashes are). Rows found at most twice in the old picture and changed in place vote for
 * the shift; the longest run of rows that match under it is the band (the desktop agent's
 * tiles.find_scroll).
 */
export function findShift(oldRows, newRows, same = (a, b) => newRows[a] === oldRows[b]) {
  const height = newRows.length;
  if (oldRows.length !== height || height < 8) return null;
  const where = new Map();
  for (let y = 0; y < height; y += 1) {
    const found = where.get(oldRows[y]);
    if (!found) where.set(oldRows[y], [y]);
    else if (found.length < 3) found.push(y);
  }
  const votes = new Map();
  for (let y = 0; y < height; y += 1) {
    const found = where.get(newRows[y]);
    if (found && found.length <= 2 && oldRows[y] !== newRows[y]) {
      for (const yOld of found) votes.set(yOld - y, (votes.get(yOld - y) || 0) + 1);
    }
  }
  let dy = 0;
  let most = 0;
  for (const [shift, n] of votes) {
    if (n > most) {
      dy = shift;
      most = n;
    }
  }
  if (dy === 0 || most < Math.floor(height / 8)) return null;
  let best = [0, 0];
  let start = null;
  for (let y = 0; y <= height; y += 1) {
    const ok = y < height && y + dy >= 0 && y + dy < height && same(y, y + dy);
    if (ok && start === null) start = y;
    else if (!ok && start !== null) {
      if (y - start > best[1] - best[0]) best = [start, y];
      start = null;
    }
  }
  if (best[1] - best[0] < Math.floor(height / 4)) return null;
  return [best[0], best[1], dy];
}

/** Columns compared for a scroll in a picture `width` wide whose sent width is `sentWidth`:
 * all but the right edge (SCROLLBAR sent pixels), when the picture is wide enough. */
export function scrollColumns(width, sentWidth = width) {
  if (sentWidth <= 4 * SCROLLBAR) return width;
  return width - Math.ceil((SCROLLBAR * width) / sentWidth);
}

/**
 * A scroll between two sent pictures (Uint32Array, one element a pixel): [y0, y1, dy, w]
 * when rows y0..y1 of `current` are rows y0+dy..y1+dy of `previous` exactly over their
 * first w pixels; else null.
 */
export function findScroll(previous, current, width, height) {
  const cols = scrollColumns(width);
  const oldRows = rowHashes(previous, width, height, cols);
  const newRows = rowHashes(current, width, height, cols);
  const same = (yNew, yOld) => {
    if (newRows[yNew] !== oldRows[yOld]) return false;
    const a = yNew * width;
    const b = yOld * width;
    for (let x = 0; x < cols; x += 1) if (current[a + x] !== previous[b + x]) return false;
    return true;
  };
  const band = findShift(oldRows, newRows, same);
  return band && [...band, cols];
}
