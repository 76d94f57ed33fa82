/**
 * The operator page's static shell: the HTML document and its stylesheet, served at `/ui` and
 * `/ui/style.css`. Everything the page shows is built by its script (`/ui/main.js`, compiled from
 * src/ui/) with DOM calls and text nodes; this shell holds no data, so it is the same for every
 * caller and needs no token. No font, script or style comes from anywhere but this server.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>codeq operator</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/style.css">
<script type="module" src="/ui/main.js"></script>
</head>
<body>
<header class="top">
  <h1>codeq <span class="sub">operator</span></h1>
  <div id="identity" class="identity" hidden>
    <span id="identity-text"></span>
    <button type="button" id="sign-out" class="ghost">Sign out</button>
  </div>
</header>
<main>
  <p id="status" class="status" role="status" aria-live="polite"></p>
  <section id="sign-in" class="card" aria-labelledby="sign-in-title">
    <h2 id="sign-in-title">Sign in</h2>
    <p class="hint">Paste a bearer token of the codeq HTTP API (a static token or a JWT). It stays in this tab's memory only and is sent with each request; reloading the page forgets it.</p>
    <form id="sign-in-form" autocomplete="off">
      <label for="token">Bearer token</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required>
      <button type="submit">Sign in</button>
    </form>
    <p id="sign-in-error" class="error" role="alert"></p>
    <noscript><p class="error">This page needs JavaScript.</p></noscript>
  </section>
  <div id="app" hidden>
    <section class="card" aria-labelledby="search-title">
      <h2 id="search-title">Find a task</h2>
      <form id="search-form" class="search" autocomplete="off">
        <label for="search-kind">Find by</label>
        <select id="search-kind" name="kind">
          <option value="task">task id</option>
          <option value="trace">trace id</option>
          <option value="key">idempotency key</option>
        </select>
        <label for="search-value" class="visually-hidden">Value to find</label>
        <input id="search-value" name="value" type="search" spellcheck="false" required>
        <button type="submit">Find</button>
      </form>
      <p id="search-error" class="error" role="alert"></p>
      <div id="matches"></div>
    </section>
    <section id="task" class="card" aria-labelledby="task-title" hidden>
      <h2 id="task-title">Task</h2>
      <div id="task-body"></div>
    </section>
    <section id="queues" class="card" aria-labelledby="queues-title">
      <div class="section-head">
        <h2 id="queues-title">Queues</h2>
        <button type="button" id="queues-refresh" class="ghost">Refresh</button>
      </div>
      <div id="queues-body"></div>
    </section>
  </div>
</main>
</body>
</html>
`

export const PAGE_CSS = `
:root {
  --ink: #1b1f24; --muted: #4d5661; --line: #d4d9df; --paper: #f5f7f9; --card: #ffffff;
  --accent: #0b5cad; --accent-ink: #ffffff; --bad: #a4161a; --bad-bg: #fdecec; --warn-bg: #fff4d6;
  --ok: #1d6b32; --bar: #2f6fb3; --bar-remote: #7a4fb0;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--paper);
}
* { box-sizing: border-box; }
body { margin: 0; }
.top { display: flex; align-items: center; justify-content: space-between; padding: 0.6rem 1.5rem; background: #15202b; color: #f2f5f8; }
.top h1 { font-size: 1.2rem; margin: 0; letter-spacing: 0.02em; }
.top .sub { font-weight: 400; color: #c3cfdb; }
.identity { display: flex; gap: 0.8rem; align-items: center; font-size: 0.9rem; }
.identity .ghost { color: #f2f5f8; border-color: #8fa3b8; }
main { max-width: 1280px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.25rem; margin: 0 0 1rem; }
.card h2 { font-size: 1.1rem; margin: 0 0 0.75rem; }
.card h3 { font-size: 1rem; margin: 1.25rem 0 0.5rem; }
.section-head { display: flex; justify-content: space-between; align-items: center; }
.hint { color: var(--muted); font-size: 0.9rem; margin-top: 0; }
form { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
label { font-weight: 600; font-size: 0.9rem; }
input, select { font: inherit; padding: 0.4rem 0.5rem; border: 1px solid #8a949e; border-radius: 4px; background: #fff; color: var(--ink); }
#token { flex: 1 1 24rem; font-family: ui-monospace, monospace; }
#search-value { flex: 1 1 28rem; font-family: ui-monospace, monospace; }
button { font: inherit; padding: 0.4rem 0.9rem; border-radius: 4px; border: 1px solid var(--accent); background: var(--accent); color: var(--accent-ink); cursor: pointer; }
button.ghost { background: transparent; color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
button.link { background: none; border: none; color: var(--accent); padding: 0; text-decoration: underline; font-family: ui-monospace, monospace; font-size: 0.85rem; }
button:focus-visible, a:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
a { color: var(--accent); }
.error { color: var(--bad); font-weight: 600; margin: 0.5rem 0 0; }
.error:empty, .status:empty { display: none; }
.status { background: #e7f1fb; border: 1px solid #9cc3ea; border-radius: 6px; padding: 0.5rem 0.8rem; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.mono { font-family: ui-monospace, monospace; font-size: 0.85rem; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; margin: 0; }
dl.summary dt { color: var(--muted); font-weight: 600; }
dl.summary dd { margin: 0; overflow-wrap: anywhere; }
.note { background: var(--warn-bg); border: 1px solid #e2c36b; border-radius: 6px; padding: 0.5rem 0.8rem; }
details pre { background: var(--paper); border: 1px solid var(--line); padding: 0.5rem; overflow: auto; max-height: 16rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.88rem; }
td[data-col="webhook"] { min-width: 10rem; }
td[data-col="reason"] { overflow-wrap: anywhere; }
caption { text-align: left; color: var(--muted); padding-bottom: 0.3rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.mono, td.nowrap { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.lane td:first-child { padding-left: 1.5rem; color: var(--muted); }
tr.total td { font-weight: 700; border-top: 2px solid var(--line); }
.ev { display: inline-block; padding: 0.05rem 0.45rem; border-radius: 999px; font-size: 0.8rem; font-weight: 600; background: #e6ebf0; color: var(--ink); }
.ev-bad { background: var(--bad-bg); color: var(--bad); }
.ev-good { background: #e3f3e7; color: var(--ok); }
.ev-retry { background: var(--warn-bg); color: #6b4a00; }
.tree, .tree ul { list-style: none; margin: 0; padding: 0; }
.span-label.nested .span-name::before { content: "↳ "; color: var(--muted); }
.span-row { display: grid; grid-template-columns: 26rem 1fr 6.5rem; gap: 0.75rem; align-items: center; padding: 0.25rem 0.35rem; border-radius: 4px; }
.span-row.has-problem { background: var(--bad-bg); outline: 1px solid #e8a0a2; }
.span-name { font-family: ui-monospace, monospace; font-size: 0.85rem; overflow-wrap: anywhere; }
.span-meta { color: var(--muted); font-size: 0.78rem; }
.track { position: relative; height: 0.8rem; background: #eef1f4; border-radius: 3px; }
.bar { position: absolute; top: 0; bottom: 0; min-width: 2px; background: var(--bar); border-radius: 3px; }
.has-problem .bar { background: var(--bad); }
.duration { text-align: right; font-variant-numeric: tabular-nums; font-size: 0.85rem; }
.badge { display: inline-block; margin-left: 0.4rem; padding: 0 0.4rem; border-radius: 4px; font-size: 0.72rem; font-weight: 700; vertical-align: middle; }
.badge.remote { background: #efe7f8; color: #5a2f91; border: 1px solid #b9a0dc; }
.badge.problem { background: var(--bad); color: #fff; }
.badge.status-error { background: var(--bad-bg); color: var(--bad); border: 1px solid #e8a0a2; }
ul.problems { margin: 0.2rem 0 0.3rem 0; padding-left: 1.2rem; color: var(--bad); font-size: 0.82rem; }
.trace-head { display: flex; flex-wrap: wrap; gap: 1rem; align-items: baseline; }
.empty { color: var(--muted); font-style: italic; }
`
