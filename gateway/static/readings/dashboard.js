// The meterusage dashboard: reads the JSON API (/api/v1/) and shows one meter's readings over a
// range as a chart, a summary, its gaps and a paged table. The view lives in the URL
// (?meter=&start=&end=&window=&tz=&page=, and &live=1), so it can be shared and survives a reload.
// Live mode polls the meter's changes feed and reloads the view when a change falls in it.
// The API answers with what the signed-in user (the session cookie, which same-origin requests
// carry) may see; the page only reads, so it sends no CSRF token.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const PAGE_ROWS = 50;
  // Auto picks the finest window with at most this many points; a chosen window may have up to
  // MAX_POINTS (one page of readings). Coarser data is aggregated by the server, not the browser.
  const MAX_AUTO_POINTS = 5000;
  const MAX_POINTS = 10000;
  const WINDOWS = ["15m", "hour", "day", "week", "month"];
  const WINDOW_SECONDS = { "15m": 900, hour: 3600, day: 86400, week: 7 * 86400, month: 30.44 * 86400 };
  const WINDOW_LABELS = { "15m": "15 minutes", hour: "hour", day: "day", week: "week", month: "month" };
  const ROW_NAMES = { "15m": "readings", hour: "hourly windows", day: "daily windows", week: "weekly windows", month: "monthly windows" };

  const $ = (id) => document.getElementById(id);
  const main = $("dashboard");
  const controls = {
    meter: $("meter"), start: $("start"), end: $("end"), window: $("window"), tz: $("tz"), live: $("live"),
  };
  // Live mode asks for changes this often; a failed ask is retried after LIVE_RETRY_MS.
  const LIVE_POLL_MS = 2000;
  const LIVE_RETRY_MS = 5000;

  let meters = [];
  let state = null; // {meter, start, end, window, tz, page}; start and end are wall times in tz
  let shown = null; // what the last successful load returned
  let inflight = null;
  let chart = null;
  // The changes feed of the meter followed: its cursor (`next` of the last answer), the pending
  // poll and the one in flight.
  const live = { meter: null, cursor: null, timer: null, controller: null };

  // ---- Times -------------------------------------------------------------------------------

  const wallFormats = new Map();
  function wallFormat(tz) {
    if (!wallFormats.has(tz)) {
      wallFormats.set(tz, new Intl.DateTimeFormat("en-US", {
        timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit",
      }));
    }
    return wallFormats.get(tz);
  }

  function wallParts(epoch, tz) {
    const parts = {};
    for (const { type, value } of wallFormat(tz).formatToParts(new Date(epoch * 1000))) parts[type] = value;
    return parts;
  }

  // "2019-01-01T00:15": the wall time of an instant in tz, as datetime-local inputs hold it.
  function wallTime(epoch, tz) {
    const p = wallParts(epoch, tz);
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
  }

  function displayTime(epoch, tz) {
    return wallTime(epoch, tz).replace("T", " ");
  }

  // The instant of a wall time in tz (the earlier one on a repeated hour), in epoch seconds.
  function instantOf(wall, tz) {
    const [date, clock = "00:00"] = wall.split("T");
    const [y, mo, d] = date.split("-").map(Number);
    const [h, mi] = clock.split(":").map(Number);
    const asUtc = Date.UTC(y, mo - 1, d, h, mi) / 1000;
    const offsetAt = (epoch) => {
      const p = wallParts(epoch, tz);
      return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) / 1000 - epoch;
    };
    const first = asUtc - offsetAt(asUtc);
    const second = asUtc - offsetAt(first);
    return Math.min(first, second);
  }

  const epochOf = (rfc3339) => Date.parse(rfc3339) / 1000;

  function validZone(tz) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  }

  // ---- Numbers -----------------------------------------------------------------------------

  const number2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const integer = new Intl.NumberFormat("en-US");
  const percent = new Intl.NumberFormat("en-US", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 2 });
  const fmt = (value) => (value === null || value === undefined ? "–" : number2.format(value));

  // ---- API ---------------------------------------------------------------------------------

  class ProblemError extends Error {
    constructor(problem) {
      super(problem.detail || problem.title);
      this.problem = problem;
    }
  }

  function apiUrl(kind, params) {
    const path = config.api[kind].replace(config.meterPlaceholder, encodeURIComponent(state.meter));
    return `${path}?${new URLSearchParams(params)}`;
  }

  async function getJSON(url, signal) {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ProblemError({ title: "Cannot reach the server", detail: String(error.message || error) });
    }
    if (response.ok) return response.json();
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) throw new ProblemError(await response.json());
    throw new ProblemError({ title: response.statusText || "Error", status: response.status, detail: `HTTP ${response.status}` });
  }

  async function allPages(url, key, signal) {
    const items = [];
    while (url) {
      const page = await getJSON(url, signal);
      items.push(...page[key]);
      url = page.next;
    }
    return items;
  }

  // ---- State and URL -----------------------------------------------------------------------

  function meterNamed(name) {
    return meters.find((meter) => meter.name === name);
  }

  // The meter's first reading to just after its last, in tz; the last week when it has none.
  function wholeRange(meter, tz) {
    if (meter.first_reading_time && meter.last_reading_time) {
      return {
        start: wallTime(epochOf(meter.first_reading_time), tz),
        end: wallTime(epochOf(meter.last_reading_time) + meter.interval_seconds, tz),
      };
    }
    const now = Math.floor(Date.now() / 1000);
    return { start: wallTime(now - 7 * 86400, tz).slice(0, 10) + "T00:00", end: wallTime(now + 86400, tz).slice(0, 10) + "T00:00" };
  }

  function defaultState(meter) {
    return { meter: meter.name, ...wholeRange(meter, meter.time_zone), window: "auto", tz: meter.time_zone, page: 1 };
  }

  const WALL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/;

  function stateFromUrl() {
    const query = new URLSearchParams(window.location.search);
    const meter = meterNamed(query.get("meter")) || meters[0];
    const tz = validZone(query.get("tz") || "") ? query.get("tz") : meter.time_zone;
    // A range in the URL belongs to the meter it names; another meter starts with its whole data.
    const named = query.get("meter") === meter.name;
    const whole = wholeRange(meter, tz);
    const start = named && WALL.test(query.get("start") || "") ? query.get("start") : whole.start;
    const end = named && WALL.test(query.get("end") || "") ? query.get("end") : whole.end;
    const windowChoice = ["auto", ...WINDOWS].includes(query.get("window")) ? query.get("window") : "auto";
    const page = Math.max(1, parseInt(query.get("page"), 10) || 1);
    const followed = { meter: meter.name, start, end, window: windowChoice, tz, page, live: query.get("live") === "1" };
    return followed.live && !coversNow(followed) ? { ...followed, ...liveRange(tz) } : followed;
  }

  function urlOf(s) {
    const params = { meter: s.meter, start: s.start, end: s.end, window: s.window, tz: s.tz, page: s.page };
    return `?${new URLSearchParams(s.live ? { ...params, live: "1" } : params)}`;
  }

  function setState(changes, { push = true, reload = true } = {}) {
    state = { ...state, ...changes };
    const url = urlOf(state);
    if (url !== window.location.search) {
      (push ? history.pushState : history.replaceState).call(history, null, "", url);
      returnHereAfterSigning();
    }
    showControls();
    if (reload) load();
  }

  // Signing in or out comes back to the view shown (the URL holds it).
  function returnHereAfterSigning() {
    const here = window.location.pathname + window.location.search;
    const signIn = $("sign-in");
    if (signIn) signIn.search = `?${new URLSearchParams({ next: here })}`;
    const signOut = document.querySelector("#sign-out [name=next]");
    if (signOut) signOut.value = here;
  }

  // ---- Windows -----------------------------------------------------------------------------

  function spanSeconds() {
    return instantOf(state.end, state.tz) - instantOf(state.start, state.tz);
  }

  function pointsOf(windowName) {
    return Math.ceil(spanSeconds() / WINDOW_SECONDS[windowName]);
  }

  function effectiveWindow() {
    if (state.window !== "auto" && pointsOf(state.window) <= MAX_POINTS) return state.window;
    return WINDOWS.find((name) => pointsOf(name) <= MAX_AUTO_POINTS) || "month";
  }

  // ---- Controls ----------------------------------------------------------------------------

  function fillMeters() {
    controls.meter.replaceChildren(...meters.map((meter) => {
      const option = document.createElement("option");
      option.value = meter.name;
      option.textContent = meter.reading_count === null
        ? `${meter.name} (${meter.readings_unavailable} unavailable)`
        : `${meter.name} (${integer.format(meter.reading_count)} readings)`;
      return option;
    }));
  }

  function fillZones() {
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    const names = new Set(["UTC", ...meters.map((meter) => meter.time_zone), ...zones]);
    $("zones").replaceChildren(...[...names].map((name) => {
      const option = document.createElement("option");
      option.value = name;
      return option;
    }));
  }

  function showControls() {
    controls.meter.value = state.meter;
    controls.start.value = state.start;
    controls.end.value = state.end;
    controls.tz.value = state.tz;
    controls.window.value = state.window;
    controls.live.checked = Boolean(state.live);
    const ordered = spanSeconds() > 0;
    for (const option of controls.window.options) {
      if (option.value === "auto") continue;
      const points = ordered ? pointsOf(option.value) : 0;
      option.disabled = points > MAX_POINTS;
      option.title = option.disabled ? `${integer.format(points)} points: choose a wider window or a shorter range` : "";
    }
  }

  // A range chosen that has ended is a look back: live mode ends.
  function chooseRange(range) {
    const stillLive = Boolean(state.live) && coversNow({ ...state, ...range });
    if (state.live && !stillLive) stopLive();
    setState({ ...range, page: 1, live: stillLive });
  }

  function onControlChange(event) {
    const field = event.target;
    if (field === controls.live) {
      setLive(field.checked);
    } else if (field === controls.meter) {
      const meter = meterNamed(field.value);
      const next = defaultState(meter);
      // Live mode follows the meter chosen, from its latest readings.
      setState(state.live ? { ...next, ...liveRange(next.tz), live: true } : next, { reload: !state.live });
      if (state.live) startLive();
    } else if (field === controls.tz) {
      if (!validZone(field.value)) {
        field.setCustomValidity("Not a time zone known to this browser");
        field.reportValidity();
        return;
      }
      field.setCustomValidity("");
      // The same instants, on the new zone's clock.
      const start = wallTime(instantOf(state.start, state.tz), field.value);
      const end = wallTime(instantOf(state.end, state.tz), field.value);
      setState({ tz: field.value, start, end, page: 1 });
    } else if (field === controls.start || field === controls.end) {
      if (!WALL.test(controls.start.value) || !WALL.test(controls.end.value)) return;
      chooseRange({ start: controls.start.value, end: controls.end.value });
    } else if (field === controls.window) {
      setState({ window: field.value, page: 1 });
    }
  }

  // ---- Loading -----------------------------------------------------------------------------

  function setPhase(phase, message) {
    main.dataset.state = phase;
    main.setAttribute("aria-busy", String(phase === "loading"));
    $("status").textContent = message;
  }

  function showError(error) {
    const problem = error.problem || { title: "Error", detail: String(error) };
    const box = $("error");
    const title = document.createElement("strong");
    title.textContent = problem.status ? `${problem.title} (${problem.status})` : problem.title;
    const detail = document.createElement("span");
    detail.textContent = problem.detail || "";
    box.replaceChildren(title, detail);
    if (problem.status === 503 || problem.status === 504) {
      const hint = document.createElement("p");
      hint.textContent = "The readings service is not answering. It may be restarting; try again in a moment.";
      box.append(hint);
    }
    box.hidden = false;
  }

  // `quiet`: a reload of live mode, which leaves the page as it is until the new data is in.
  async function load({ quiet = false } = {}) {
    inflight?.abort();
    const controller = new AbortController();
    inflight = controller;
    if (spanSeconds() <= 0) {
      $("error").hidden = true;
      setPhase("error", "");
      showError({ problem: { title: "Invalid range", detail: "“To” must be after “From”." } });
      return;
    }
    const windowName = effectiveWindow();
    if (!quiet) {
      $("error").hidden = true;
      setPhase("loading", "Loading…");
    }
    const range = { start: state.start, end: state.end, tz: state.tz };
    const raw = windowName === "15m";
    try {
      const [series, aggregates, completeness] = await Promise.all([
        raw ? allPages(apiUrl("readings", { ...range, page_size: MAX_POINTS }), "readings", controller.signal) : null,
        // For readings, one window over the whole range gives the summary.
        getJSON(apiUrl("aggregates", { ...range, window: raw ? "month" : windowName }), controller.signal),
        getJSON(apiUrl("completeness", range), controller.signal),
      ]);
      if (inflight !== controller) return;
      $("error").hidden = true;
      shown = { raw, windowName, series, aggregates, completeness, meter: meterNamed(state.meter), tz: state.tz };
      $("csv-link").href = raw
        ? apiUrl("readings", { ...range, page_size: MAX_POINTS, format: "csv" })
        : apiUrl("aggregates", { ...range, window: windowName, format: "csv" });
      render();
      const rows = raw ? series.length : aggregates.buckets.length;
      controls.window.options[0].textContent = `Auto (${WINDOW_LABELS[windowName]})`;
      setPhase("ready", `${integer.format(rows)} ${ROW_NAMES[windowName]}` +
        (state.window !== "auto" && state.window !== windowName ? ` (${ROW_NAMES[state.window]} would be too many points)` : ""));
    } catch (error) {
      if (error.name === "AbortError" || inflight !== controller) return;
      setPhase("error", "");
      showError(error);
    }
  }

  // ---- Rendering ---------------------------------------------------------------------------

  function render() {
    renderSummary();
    renderChart();
    renderTable();
  }

  function renderSummary() {
    const { aggregates, completeness, meter, tz } = shown;
    const unit = meter.unit;
    const total = aggregates.total;
    const extreme = (id, value, rfc3339) => {
      if (!total.count) {
        $(id).textContent = "–";
        return;
      }
      const when = document.createElement("small");
      when.textContent = displayTime(epochOf(rfc3339), tz);
      $(id).replaceChildren(`${fmt(value)} ${unit}`, when);
    };
    $("summary-total").textContent = `${fmt(total.sum)} ${unit}`;
    $("summary-mean").textContent = total.count ? `${fmt(total.mean)} ${unit}` : "–";
    extreme("summary-min", total.min, aggregates.min_time);
    extreme("summary-max", total.max, aggregates.max_time);
    $("summary-count").textContent = `${integer.format(completeness.present_count)} of ${integer.format(completeness.expected_count)}`;
    $("summary-coverage").textContent = percent.format(completeness.coverage);
    $("summary-gaps").textContent = `${integer.format(completeness.gap_count)} (${integer.format(completeness.missing_count)} missing)`;
    const gaps = completeness.gaps.slice(0, 50).map((gap) => {
      const item = document.createElement("li");
      item.textContent = `${displayTime(epochOf(gap.start), tz)} – ${displayTime(epochOf(gap.end), tz)}: ${integer.format(gap.missing_count)} missing`;
      return item;
    });
    if (completeness.gap_count > gaps.length) {
      const more = document.createElement("li");
      more.textContent = `and ${integer.format(completeness.gap_count - gaps.length)} more`;
      gaps.push(more);
    }
    $("gap-list").replaceChildren(...gaps);
  }

  // x (epoch seconds) and y columns for uPlot; null where the line must break.
  function chartData() {
    const { raw, series, aggregates, meter } = shown;
    const xs = [];
    const ys = [];
    if (raw) {
      const step = meter.interval_seconds;
      let previous = null;
      for (const reading of series) {
        const t = epochOf(reading.time);
        if (previous !== null && t - previous > step) {
          xs.push(previous + step);
          ys.push(null);
        }
        xs.push(t);
        ys.push(reading.value);
        previous = t;
      }
      return { xs, ys, points: series.length };
    }
    for (const bucket of aggregates.buckets) {
      xs.push(epochOf(bucket.start));
      ys.push(bucket.count ? bucket.sum : null);
    }
    // The last step runs to the end of the range.
    const last = aggregates.buckets[aggregates.buckets.length - 1];
    if (last) {
      xs.push(epochOf(last.end));
      ys.push(last.count ? last.sum : null);
    }
    return { xs, ys, points: aggregates.buckets.length };
  }

  function drawGaps(u) {
    const { ctx, bbox } = u;
    ctx.save();
    ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--gap").trim() || "rgba(214,69,65,0.18)";
    for (const gap of shown.completeness.gaps) {
      const left = u.valToPos(epochOf(gap.start), "x", true);
      const right = u.valToPos(epochOf(gap.end), "x", true);
      if (right < bbox.left || left > bbox.left + bbox.width) continue;
      ctx.fillRect(left, bbox.top, Math.max(right - left, 2 * devicePixelRatio), bbox.height);
    }
    ctx.restore();
  }

  function renderChart() {
    const { raw, windowName, meter, tz } = shown;
    const { xs, ys, points } = chartData();
    const container = $("chart");
    const label = raw ? `${meter.unit} per ${meter.interval_seconds / 60} minutes` : `${meter.unit} per ${WINDOW_LABELS[windowName]} (sum)`;
    $("chart-note").textContent = `${label}; gaps shaded red; times in ${tz}.`;
    const size = { width: Math.max(container.clientWidth, 300), height: 340 };
    const xRange = [instantOf(state.start, state.tz), instantOf(state.end, state.tz)];
    chart?.destroy();
    chart = new uPlot({
      ...size,
      tzDate: (epoch) => uPlot.tzDate(new Date(epoch * 1000), tz),
      // The range asked for, whatever the data covers: one live reading is not a whole axis.
      scales: { x: { time: true, range: () => xRange } },
      series: [
        { label: "Time", value: (u, epoch) => (epoch === null ? "–" : displayTime(epoch, tz)) },
        {
          label,
          stroke: "#1d6fb8",
          width: 1.5,
          fill: raw ? undefined : "rgba(29,111,184,0.08)",
          paths: raw ? undefined : uPlot.paths.stepped({ align: 1 }),
          points: { show: points <= 100 },  // a lone reading is a point, not a line
          value: (u, value) => fmt(value),
        },
      ],
      axes: [{}, { label: meter.unit, size: 70 }],
      hooks: { drawClear: [drawGaps] },
    }, [xs, ys], container);
    container.dataset.points = String(points);
    container.dataset.window = windowName;
  }

  function tableRows() {
    const { raw, series, aggregates, tz } = shown;
    if (raw) {
      return {
        head: [`Time (${tz})`, "Value"],
        rows: series.map((reading) => ({ cells: [displayTime(epochOf(reading.time), tz), fmt(reading.value)] })),
      };
    }
    return {
      head: [`Start (${tz})`, "Readings", "Coverage", "Sum", "Mean", "Min", "Max"],
      rows: aggregates.buckets.map((b) => ({
        cells: [
          displayTime(epochOf(b.start), tz), `${integer.format(b.count)} / ${integer.format(b.expected_count)}`,
          percent.format(b.coverage), fmt(b.sum), fmt(b.mean), fmt(b.min), fmt(b.max),
        ],
        kind: b.count === 0 ? "empty" : b.count < b.expected_count ? "partial" : "",
      })),
    };
  }

  function renderTable() {
    const { head, rows } = tableRows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
    const page = Math.min(state.page, pages);
    const first = (page - 1) * PAGE_ROWS;
    const visible = rows.slice(first, first + PAGE_ROWS);
    const headRow = document.createElement("tr");
    headRow.append(...head.map((text) => Object.assign(document.createElement("th"), { textContent: text, scope: "col" })));
    $("values").tHead.replaceChildren(headRow);
    $("values").tBodies[0].replaceChildren(...visible.map(({ cells, kind }) => {
      const row = document.createElement("tr");
      if (kind) row.className = kind;
      row.append(...cells.map((text) => Object.assign(document.createElement("td"), { textContent: text })));
      return row;
    }));
    $("table-info").textContent = rows.length
      ? `Rows ${integer.format(first + 1)}–${integer.format(first + visible.length)} of ${integer.format(rows.length)}`
      : "No rows";
    $("previous-page").disabled = page <= 1;
    $("next-page").disabled = page >= pages;
  }

  function turnPage(step) {
    setState({ page: state.page + step }, { reload: false });
    renderTable();
  }

  // ---- Live mode ---------------------------------------------------------------------------
  // The page polls GET .../changes/?after=<cursor> every LIVE_POLL_MS rather than holding a
  // stream open: each poll is a short request, so an open page never ties up a web worker.

  function nowEpoch() {
    return Math.floor(Date.now() / 1000);
  }

  function coversNow(s) {
    const now = nowEpoch();
    return instantOf(s.start, s.tz) <= now && now < instantOf(s.end, s.tz);
  }

  // The last 24 hours, to the end of the current hour.
  function liveRange(tz) {
    const end = Math.floor(nowEpoch() / 3600) * 3600 + 3600;
    return { start: wallTime(end - 86400, tz), end: wallTime(end, tz) };
  }

  function setLiveNote(mode, text) {
    main.dataset.live = mode;
    $("live-note").textContent = text;
  }

  function setLive(on) {
    if (!on) {
      stopLive();
      setState({ live: false }, { reload: false });
      return;
    }
    // Live mode shows the latest readings: a range that has ended moves to the last 24 hours.
    setState(coversNow(state) ? { live: true } : { ...liveRange(state.tz), page: 1, live: true }, { reload: false });
    startLive();
  }

  // Follow state.meter from now: the first poll takes a cursor, then the view is loaded, so that
  // nothing committed in between is missed.
  function startLive() {
    stopLive();
    live.meter = state.meter;
    live.cursor = null;
    poll();
  }

  function stopLive() {
    clearTimeout(live.timer);
    live.timer = null;
    live.controller?.abort();
    live.controller = null;
    setLiveNote("off", "");
  }

  function schedulePoll(delay) {
    clearTimeout(live.timer);
    live.timer = setTimeout(poll, delay);
  }

  async function poll() {
    live.timer = null;
    if (!state.live || document.hidden) return;
    live.controller?.abort();
    const controller = new AbortController();
    live.controller = controller;
    const first = live.cursor === null;
    const meter = live.meter;
    try {
      const answer = await getJSON(apiUrl("changes", first ? {} : { after: live.cursor }), controller.signal);
      if (live.controller !== controller || meter !== state.meter) return;
      live.cursor = answer.next;
      setLiveNote("on", "Live");
      if (first) {
        load();
      } else if (!coversNow(state)) {
        setState({ ...liveRange(state.tz), page: 1 }, { push: false });  // the clock moved on
      } else if (answer.changes.length) {
        applyChanges(answer.changes);
      }
      if (answer.changes.length) showLatest(answer.changes[answer.changes.length - 1]);
      schedulePoll(answer.more ? 0 : LIVE_POLL_MS);
    } catch (error) {
      if (error.name === "AbortError" || live.controller !== controller) return;
      // A cursor the feed no longer knows (too old): start again from now, view reloaded.
      if (error.problem?.status === 400) live.cursor = null;
      if (first) load();
      setLiveNote("retrying", `Live: ${error.problem?.detail || error.message}; trying again`);
      schedulePoll(LIVE_RETRY_MS);
    }
  }

  function applyChanges(changes) {
    const start = instantOf(state.start, state.tz);
    const end = instantOf(state.end, state.tz);
    if (changes.some((change) => epochOf(change.time) >= start && epochOf(change.time) < end)) {
      load({ quiet: true });
    }
  }

  function showLatest(change) {
    const cell = $("summary-latest");
    const when = document.createElement("small");
    when.textContent = displayTime(epochOf(change.time), state.tz) + (change.replaced ? " (correction)" : "");
    cell.replaceChildren(`${fmt(change.value)} ${meterNamed(state.meter)?.unit || ""}`.trim(), when);
    cell.dataset.time = change.time;
    cell.dataset.value = String(change.value);
    cell.dataset.replaced = String(change.replaced);
  }

  function onVisibilityChange() {
    if (!state.live) return;
    if (document.hidden) {
      // A hidden tab asks nothing; it resumes from its cursor when shown again.
      clearTimeout(live.timer);
      live.timer = null;
      live.controller?.abort();
      live.controller = null;
      setLiveNote("paused", "Live (paused while hidden)");
    } else {
      poll();
    }
  }

  // ---- Start -------------------------------------------------------------------------------

  async function start() {
    try {
      meters = await allPages(`${config.api.meters}?page_size=1000`, "results");
    } catch (error) {
      setPhase("error", "");
      const refused = error.problem && [401, 403].includes(error.problem.status);
      showError(refused && !config.signedIn
        ? { problem: { ...error.problem, detail: `${error.problem.detail || ""} Sign in to see your accounts' meters.`.trim() } }
        : error);
      return;
    }
    if (!meters.length) {
      setPhase("error", "");
      showError({
        problem: config.signedIn
          ? { title: "No meters", detail: "None you may see: import readings (manage.py import_readings FILE.csv --account NAME), or ask to be made a member of an account that owns meters." }
          : { title: "No public meters", detail: "Sign in to see your accounts' meters." },
      });
      return;
    }
    fillMeters();
    fillZones();
    state = stateFromUrl();
    history.replaceState(null, "", urlOf(state));
    returnHereAfterSigning();
    showControls();
    $("controls").addEventListener("change", onControlChange);
    $("controls").addEventListener("submit", (event) => event.preventDefault());
    $("whole-range").addEventListener("click", () => chooseRange(wholeRange(meterNamed(state.meter), state.tz)));
    $("previous-page").addEventListener("click", () => turnPage(-1));
    $("next-page").addEventListener("click", () => turnPage(1));
    window.addEventListener("popstate", () => {
      const followed = state.live ? state.meter : null;
      state = stateFromUrl();
      returnHereAfterSigning();
      showControls();
      if (!state.live) stopLive();
      if (state.live && followed !== state.meter) {
        startLive();
      } else {
        load();
      }
    });
    document.addEventListener("visibilitychange", onVisibilityChange);
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => chart?.setSize({ width: Math.max($("chart").clientWidth, 300), height: 340 }), 150);
    });
    if (state.live) {
      startLive();
    } else {
      load();
    }
  }

  start();
})();
