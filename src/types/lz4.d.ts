/**
 * The part of the `lz4` package (node-lz4, native) that remusd uses: raw LZ4
 * blocks with no frame header. There is no @types package for it.
 */
declare module "lz4" {
  /**
   * Compresses all of `input` into `output[startIdx, endIdx)`. Returns the
   * block length, or 0 when the block would not fit (incompressible input).
   */
  function encodeBlock(input: Uint8Array, output: Uint8Array, startIdx?: number, endIdx?: number): number;
  /**
   * Decodes the block `input` into `output` (at most `output.length` bytes).
   * Returns the decoded length, or a negative number when the block is
   * malformed or would overflow `output`. Pass exact views: the native code
   * does not bound `startIdx`/`endIdx` by the input's length.
   */
  function decodeBlock(input: Uint8Array, output: Uint8Array, startIdx?: number, endIdx?: number): number;
  /** Largest block `encodeBlock` can produce for `inputSize` bytes. */
  function encodeBound(inputSize: number): number;
  const lz4: {
    encodeBlock: typeof encodeBlock;
    decodeBlock: typeof decodeBlock;
    encodeBound: typeof encodeBound;
  };
  export default lz4;
}
