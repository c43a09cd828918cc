/**
 * The dashboard's one page (/cache/ui/). It holds no data and no inline script or style, so a
 * strict Content-Security-Policy applies; the script fills it from the JSON endpoints.
 */
export function pageHtml(assets: { style: string; script: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>image-cache dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${assets.style}">
<script src="${assets.script}" defer></script>
</head>
<body>
<header>
  <h1>image-cache dashboard</h1>
  <p id="status" role="status" aria-live="polite"></p>
  <button type="button" id="refresh">Refresh</button>
  <button type="button" id="signout" hidden>Forget token</button>
</header>
<main>
<section id="login" aria-labelledby="login-title" hidden>
  <h2 id="login-title">Access token needed</h2>
  <p>This cache has access control on. Give a token of scope <code>read</code> or more
  (<code>image-cache token create</code>); it is kept in this tab's session storage only.</p>
  <form id="login-form">
    <div>
      <label for="token">Token</label>
      <input id="token" name="token" type="password" autocomplete="off" required>
    </div>
    <button type="submit">Open the dashboard</button>
    <p id="login-error" role="alert"></p>
  </form>
</section>
<div id="content" hidden>
<div class="grid">
  <section id="storage" aria-labelledby="storage-title">
    <h2 id="storage-title">Storage against the budget</h2>
    <dl id="storage-figures"></dl>
    <div id="storage-plot"></div>
    <p id="storage-projection" class="note"></p>
    <p id="storage-note" class="note"></p>
  </section>
  <section id="traffic" aria-labelledby="traffic-title">
    <h2 id="traffic-title">Hit ratio and upstream pulls saved per day</h2>
    <p id="traffic-totals"></p>
    <h3 id="hit-title">Hit ratio (manifests and blobs)</h3>
    <div id="hit-plot" aria-labelledby="hit-title"></div>
    <h3 id="saved-title">Upstream pulls saved (manifests answered from the cache)</h3>
    <div id="saved-plot" aria-labelledby="saved-title"></div>
  </section>
</div>
<section id="upstreams" aria-labelledby="upstreams-title">
  <h2 id="upstreams-title">Upstream registries and rate-limit headroom</h2>
  <div class="table-wrap"><table>
    <thead><tr><th scope="col">Registry</th><th scope="col">URL</th><th scope="col">Credentials</th>
      <th scope="col">Rate limit remaining</th><th scope="col">Reported</th></tr></thead>
    <tbody id="upstreams-body"></tbody>
  </table></div>
</section>
<section id="images" aria-labelledby="images-title">
  <h2 id="images-title">Images</h2>
  <div class="filter">
    <label for="filter">Filter by name or ID</label>
    <input id="filter" type="search" autocomplete="off">
  </div>
  <p id="images-count" class="note" aria-live="polite"></p>
  <div class="table-wrap"><table>
    <caption class="note">Sort by a column with its header button (Enter or Space).</caption>
    <thead><tr>
      <th scope="col" data-sort="name" aria-sort="none"><button type="button">Name</button></th>
      <th scope="col" data-sort="size" aria-sort="none"><button type="button">Size</button></th>
      <th scope="col" data-sort="created" aria-sort="none"><button type="button">Created</button></th>
      <th scope="col" data-sort="lastUsed" aria-sort="none"><button type="button">Last used</button></th>
      <th scope="col" data-sort="pins" aria-sort="none"><button type="button">Pins</button></th>
      <th scope="col" data-sort="pulls" aria-sort="none"><button type="button">Pulls</button></th>
    </tr></thead>
    <tbody id="images-body"></tbody>
  </table></div>
</section>
<section id="jobs" aria-labelledby="jobs-title">
  <h2 id="jobs-title">Running and recent jobs</h2>
  <p id="jobs-count" class="note"></p>
  <div class="table-wrap"><table>
    <thead><tr><th scope="col">Started</th><th scope="col">Kind</th><th scope="col">Of</th>
      <th scope="col">Status</th><th scope="col">Updated</th><th scope="col">Error</th></tr></thead>
    <tbody id="jobs-body"></tbody>
  </table></div>
</section>
<section id="watches" aria-labelledby="watches-title">
  <h2 id="watches-title">Watched tags</h2>
  <p id="watches-budgets" class="note"></p>
  <div class="table-wrap"><table>
    <thead><tr><th scope="col">Tag</th><th scope="col">Every</th><th scope="col">Platforms</th>
      <th scope="col">Last check</th><th scope="col">Last change</th><th scope="col">Next check</th>
      <th scope="col">Last error</th></tr></thead>
    <tbody id="watches-body"></tbody>
  </table></div>
</section>
<section id="gc" aria-labelledby="gc-title">
  <h2 id="gc-title">Garbage collection reports</h2>
  <div id="gc-plot"></div>
  <div class="table-wrap"><table>
    <thead><tr><th scope="col">Started</th><th scope="col">Trigger</th><th scope="col">Deleted (blobs / bytes)</th>
      <th scope="col">Kept (blobs / bytes)</th><th scope="col">Took</th><th scope="col">Errors</th></tr></thead>
    <tbody id="gc-body"></tbody>
  </table></div>
</section>
</div>
</main>
</body>
</html>
`;
}
