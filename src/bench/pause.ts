/**
 * Case (a): the pause for N dirty pages, on a 256 MiB and a 2 GiB domain:
 * draining the dirty log and capturing with the copy capturer, the same with
 * the copy-on-write capturer, and a plain gather copy of the same pages (the
 * physical floor of any copying capture). Also where copy-on-write moves the
 * cost: the guest's first write to each frozen page (one page copy each), and
 * releasing the capture.
 */
import { CopyCapturer, CowCapturer } from "../domain/capture.js";
import { GuestMemory, PAGE_SIZE } from "../domain/memory.js";
import type { BenchCase } from "./case.js";
import { fillPages, seededPfns } from "./pages.js";
import { type Figure, figure, pairedRatios, timeNs } from "./stats.js";

const us = (ns: number) => ns / 1e3;

export function benchPause(domainMiB: number, dirty: readonly number[], rounds: number): Figure[] {
  const mem = GuestMemory.ofMiB(domainMiB);
  const most = Math.max(...dirty);
  const copy = new CopyCapturer(mem, most);
  const cow = new CowCapturer(mem, most);
  const plain = Buffer.allocUnsafe(most * PAGE_SIZE);
  const out = new Uint32Array(most);
  const figures: Figure[] = [];
  for (const n of dirty) {
    const pfns = seededPfns(n, mem.pages, n);
    fillPages(mem, pfns, "half", n);
    const mark = () => {
      for (let i = 0; i < n; i++) mem.log.mark(pfns[i] as number);
    };
    const s = {
      copy: [] as number[],
      cow: [] as number[],
      gather: [] as number[],
      fault: [] as number[],
      plainWrite: [] as number[],
      release: [] as number[],
    };
    for (let r = 0; r < rounds + 3; r++) {
      const keep = r >= 3;
      mark();
      const tc = timeNs(() => copy.capture(mem.log.drain(out)).release());
      mark();
      let cap: ReturnType<typeof cow.capture> | undefined;
      const tw = timeNs(() => {
        cap = cow.capture(mem.log.drain(out));
      });
      // The guest resumes: its first write to each frozen page copies it first.
      const tf = timeNs(() => {
        for (let i = 0; i < n; i++) mem.setU8((pfns[i] as number) * PAGE_SIZE + 8, r & 0xff);
      });
      const tr = timeNs(() => cap?.release());
      // The same writes with no capture outstanding.
      const tp = timeNs(() => {
        for (let i = 0; i < n; i++) mem.setU8((pfns[i] as number) * PAGE_SIZE + 8, r & 0xff);
      });
      mem.log.clear();
      const tg = timeNs(() => {
        for (let i = 0; i < n; i++) {
          const a = (pfns[i] as number) * PAGE_SIZE;
          mem.buf.copy(plain, i * PAGE_SIZE, a, a + PAGE_SIZE);
        }
      });
      if (!keep) continue;
      s.copy.push(tc);
      s.cow.push(tw);
      s.fault.push(tf);
      s.plainWrite.push(tp);
      s.release.push(tr);
      s.gather.push(tg);
    }
    const tag = `${n}_pages_${domainMiB}MiB`;
    figures.push(
      figure(`pause_cow_${tag}`, "µs", s.cow.map(us), { p99: true, detail: "drain + copy-on-write capture" }),
      figure(`pause_copy_${tag}`, "µs", s.copy.map(us), { p99: true, detail: "drain + copy capture" }),
      figure(`gather_${tag}`, "µs", s.gather.map(us), { p99: true, detail: "Buffer.copy of the same pages" }),
      figure(`gather_vs_pause_cow_${tag}`, "ratio", pairedRatios(s.gather, s.cow), {
        detail: "how many times shorter the copy-on-write pause is than the gather",
      }),
      figure(`pause_copy_vs_gather_${tag}`, "ratio", pairedRatios(s.copy, s.gather)),
      figure(
        `cow_first_write_${tag}`,
        "µs/page",
        s.fault.map((t, i) => (t - (s.plainWrite[i] as number)) / 1e3 / n),
        { detail: "extra cost of the guest's first write to a frozen page (its copy), after the pause" },
      ),
      figure(`cow_release_${tag}`, "µs", s.release.map(us)),
    );
  }
  return figures;
}

export const PAUSE_CASES: BenchCase[] = [
  {
    name: "pause-256MiB",
    title: "(a) pause for N dirty pages, 256 MiB domain: copy-on-write vs copy vs a plain gather",
    quick: true,
    run: (ctx) => benchPause(256, ctx.quick ? [1024, 16384] : [256, 1024, 4096, 16384], ctx.quick ? 15 : 61),
  },
  {
    name: "pause-2GiB",
    title: "(a) pause for N dirty pages, 2 GiB domain: copy-on-write vs copy vs a plain gather",
    quick: true,
    run: (ctx) => benchPause(2048, ctx.quick ? [16384] : [256, 1024, 4096, 16384], ctx.quick ? 15 : 61),
  },
];
