/* growth.js: the growth fault (wasupd/sim/growth.py says why it is built this way). Every
 * simulated 2 s the page adds its share of `mib_per_hour`: the `reclaimable` part to a cache it
 * drops on a `memorypressure` event (a reclaim dispatches one before its forced GC), the rest
 * to a leak that only a reload frees. Timers run no faster than every 20 ms: under a time factor
 * below 0.01 a step covers more than 2 simulated seconds and adds as much more, so the rate per
 * simulated hour holds at any factor. */
const GROWTH_STEP_S = 2; // simulated seconds per growth step (more when the factor is tiny)
const GROWTH_MIN_MS = 20; // the shortest timer the page asks for
const Growth = { timer: 0, leak: [], cache: [], owedCache: 0, owedLeak: 0 };

function growthStep(p, simSeconds) {
  // Each share keeps its own remainder: rounding one whole MiB per step into shares would
  // give all of it to the larger share (at 0.9 reclaimable, a leak that never grew).
  const mib = (p.mib_per_hour * simSeconds) / 3600;
  Growth.owedCache += mib * p.reclaimable;
  Growth.owedLeak += mib * (1 - p.reclaimable);
  const cache = Math.floor(Growth.owedCache), leak = Math.floor(Growth.owedLeak);
  Growth.owedCache -= cache;
  Growth.owedLeak -= leak;
  holdMiB(Growth.cache, cache);
  holdMiB(Growth.leak, leak);
}

function stopGrowth() {
  clearInterval(Growth.timer);
  Object.assign(Growth, { timer: 0, leak: [], cache: [], owedCache: 0, owedLeak: 0 });
}

window.addEventListener("memorypressure", () => { Growth.cache = []; });
PAGE_FAULTS.growth = (p) => {
  stopGrowth();
  const params = { mib_per_hour: Number(p.mib_per_hour ?? 60), reclaimable: Number(p.reclaimable ?? 0.5) };
  const ms = Math.max(GROWTH_MIN_MS, GROWTH_STEP_S * 1000 * CFG.timeFactor);
  Growth.timer = setInterval(() => growthStep(params, ms / (1000 * CFG.timeFactor)), ms);
};
const clearFaultBeforeGrowth = handlers.clear_fault;
handlers.clear_fault = (m) => {
  if (m.kind === "growth") stopGrowth();
  clearFaultBeforeGrowth(m);
};
