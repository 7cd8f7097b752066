/** Cuts `bytes` at the given offsets (any order, duplicates allowed: they give empty pieces). */
export function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...cuts].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let start = 0;
  for (const point of points) {
    pieces.push(bytes.subarray(start, point));
    start = point;
  }
  pieces.push(bytes.subarray(start));
  return pieces;
}
