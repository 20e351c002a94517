// Runs in the JupyterLab page (installed by test/notebooks/lab.ts before the page's own
// scripts): drives the app through its commands, the ones its menus run, and reads what
// the outputs show. `window.jupyterapp` exists because the server runs with
// --LabApp.expose_app_in_browser.
window.esmkitProbe = (() => {
  const app = () => window.jupyterapp;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const state = { run: null, path: null };
  /** The notebook last opened with `open()`. */
  const panel = () => {
    for (const w of app().shell.widgets("main")) if (w.context?.path === state.path) return w;
    throw new Error(`${state.path} is not open`);
  };
  /** Make `w` the current widget, which the notebook and document commands act on. */
  const activate = async (w) => {
    // After a reload, restoring the saved layout may activate another tab meanwhile:
    // done once `w` has stayed current for half a second.
    let stable = 0;
    for (let i = 0; i < 200 && stable < 10; i++) {
      if (app().shell.currentWidget === w) stable++;
      else {
        stable = 0;
        app().shell.activateById(w.id);
      }
      await sleep(50);
    }
    if (app().shell.currentWidget !== w) throw new Error(`${w.context.path} is not current`);
  };
  const codeCells = (p) => p.content.widgets.filter((c) => c.model.type === "code");

  return {
    ready: () => Boolean(app() && app().started !== undefined && app().shell),

    /** Open (or show) a notebook; resolves once its kernel is idle. */
    async open(path) {
      await app().started;
      await app().restored;
      const w = await app().commands.execute("docmanager:open", { path, factory: "Notebook" });
      state.path = path;
      await activate(w);
      await w.context.ready;
      await w.sessionContext.ready;
      for (let i = 0; i < 600; i++) {
        const kernel = w.sessionContext.session?.kernel;
        if (kernel && kernel.status === "idle") break;
        await sleep(100);
      }
      const kernel = w.sessionContext.session?.kernel;
      return {
        kernel: kernel ? kernel.name : null,
        status: kernel ? kernel.status : null,
        trusted: codeCells(w).map((c) => c.model.trusted),
      };
    },

    /** Start "Run All Cells" on the current notebook; `runState()` says when it ended. */
    async startRunAll() {
      await activate(panel());
      state.run = { done: false, ok: null, error: null };
      const run = state.run;
      app()
        .commands.execute("notebook:run-all-cells")
        .then(
          (ok) => Object.assign(run, { done: true, ok }),
          (e) => Object.assign(run, { done: true, ok: false, error: String(e) }),
        );
    },
    runState: () => state.run,

    /** The DOM id of the notebook panel, for the page's own locators. */
    panelId: () => panel().id,

    /** Save the current notebook; resolves once the file is written. */
    async save() {
      const w = panel();
      await activate(w);
      await app().commands.execute("docmanager:save");
      for (let i = 0; i < 300 && w.context.model.dirty; i++) await sleep(100);
      return !w.context.model.dirty;
    },

    /** What went wrong in the current notebook's cells: unrun cells, errors, stderr. */
    problems() {
      const out = [];
      codeCells(panel()).forEach((c, i) => {
        if (c.model.executionCount === null) out.push(`code cell ${i} did not run`);
        for (const o of c.model.outputs.toJSON()) {
          if (o.output_type === "error") out.push(`code cell ${i}: ${o.ename}: ${o.evalue}`);
          if (o.output_type === "stream" && o.name === "stderr") {
            const text = Array.isArray(o.text) ? o.text.join("") : o.text;
            out.push(`code cell ${i} stderr: ${text.slice(0, 500)}`);
          }
        }
      });
      return out;
    },

    /**
     * Every chart output of the current notebook, in order: drawn by the HTML fallback
     * (`.esmkit-plotly`) or by jupyterlab-plotly (`.jp-RenderedPlotly`, which shows a
     * PNG snapshot until hovered once its output holds one).
     */
    charts() {
      const outputs = panel().content.node.querySelectorAll(".jp-OutputArea-output");
      const charts = [];
      for (const o of outputs) {
        const ext = o.classList.contains("jp-RenderedPlotly");
        const div = ext ? o : o.querySelector(".esmkit-plotly");
        if (!div) continue;
        const gd = ext ? o : div;
        const title = gd.layout?.title ? gd.layout.title.text : null;
        charts.push({
          renderer: ext ? "jupyterlab-plotly" : "html",
          drawn: o.querySelector(".main-svg") !== null,
          snapshot: ext && /^data:image\/png/.test(o.querySelector("img.plot-img")?.src ?? ""),
          title: title || o.querySelector(".gtitle")?.textContent || null,
          note: o.querySelector(".main-svg") ? "" : div.textContent.trim().slice(0, 300),
          // plotly's own figure height (the output's box is 0 while scrolled out of view)
          height: Number(o.querySelector(".main-svg")?.getAttribute("height") ?? 0),
        });
      }
      return charts;
    },

    /** Points in the "train loss" trace of each drawn chart whose title starts with `prefix`. */
    trainLossPoints(prefix) {
      const counts = [];
      for (const gd of panel().content.node.querySelectorAll(".js-plotly-plot")) {
        const title = gd.layout?.title ? String(gd.layout.title.text) : "";
        if (!title.startsWith(prefix) || !gd.data) continue;
        const trace = gd.data.find((t) => t.name === "train loss");
        counts.push(trace?.x ? trace.x.length : 0);
      }
      return counts;
    },

    /** The text of the progress bars of the current notebook. */
    progressBars() {
      return [...panel().content.node.querySelectorAll(".esmkit-progress")].map((p) =>
        p.textContent.trim(),
      );
    },

    /**
     * Where the tick labels and the title of each chart's x axis lie, for the chart
     * titled `title`: to check that labels fit in the figure and miss the axis title.
     */
    xAxisBoxes(title) {
      for (const gd of panel().content.node.querySelectorAll(".js-plotly-plot")) {
        const t = gd.layout?.title ? String(gd.layout.title.text) : "";
        if (t !== title) continue;
        const box = (el) => {
          const r = el.getBoundingClientRect();
          return { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
        };
        // Out of view its boxes are empty (content-visibility): bring it into view.
        gd.scrollIntoView({ block: "center" });
        const svg = gd.querySelector(".main-svg");
        return {
          figure: box(svg),
          ticks: [...gd.querySelectorAll(".xtick text")].map(box),
          title: box(gd.querySelector(".g-xtitle text")),
        };
      }
      return null;
    },
  };
})();
