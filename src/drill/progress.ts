/**
 * The drill's progress on a terminal: one status line redrawn in place (a
 * bar of failovers done, what it is doing now, the client's rate) above the
 * lines it logs. Not a TTY (a pipe, CI): plain lines only, no escapes.
 */
export class Progress {
  private line = "";
  private readonly tty: boolean;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly total: number,
  ) {
    this.tty = out.isTTY === true;
  }

  /** Prints a line that stays (above the status line on a TTY). */
  log(s: string): void {
    if (this.tty && this.line) this.out.write("\r\x1b[K");
    this.out.write(`${s}\n`);
    if (this.tty && this.line) this.out.write(this.line);
  }

  /** Redraws the status line (a TTY only): `done` of the failovers finished, what now, the rate. */
  status(done: number, now: string, rate: string): void {
    if (!this.tty) return;
    const width = 20;
    const full = Math.round((done / Math.max(1, this.total)) * width);
    const bar = `${"█".repeat(full)}${"░".repeat(width - full)}`;
    const text = `${bar} ${done}/${this.total}  ${now}${rate ? `  · ${rate}` : ""}`;
    const cols = this.out.columns ?? 120;
    this.line = text.length >= cols ? `${text.slice(0, cols - 2)}…` : text;
    this.out.write(`\r\x1b[K${this.line}`);
  }

  /** Clears the status line. */
  end(): void {
    if (this.tty && this.line) this.out.write("\r\x1b[K");
    this.line = "";
  }
}
