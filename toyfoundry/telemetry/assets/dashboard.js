// The dashboard's orders table: sorts, filters and pages in the browser, with no network.
// Runs inside the page's one function, after `orders` ({columns, rows}) is defined there.
// Every value from the exchange is set as text (textContent), never as markup.
function ordersTable(orders) {
  const REPORTS = "../../../exchange/reports/";
  const PAGE = 50;
  const col = {};
  orders.columns.forEach(function (name, i) { col[name] = i; });
  const numeric = new Set(["minted", "passed", "promoted", "quarantined", "attainment"]);
  const rows = orders.rows;
  const table = document.getElementById("orders-table");
  const body = table.tBodies[0];
  const count = document.getElementById("t-count");
  const where = document.getElementById("t-page");
  const prev = document.getElementById("t-prev");
  const next = document.getElementById("t-next");
  const filters = ["status", "recipe", "phase"].map(function (name) {
    return [col[name], document.getElementById("f-" + name)];
  });
  const search = document.getElementById("f-search");
  let sortBy = col.order, direction = 1, page = 0, shown = rows;

  function compare(a, b) {
    const x = a[sortBy], y = b[sortBy];
    if (x === y) return a[col.order] < b[col.order] ? -1 : 1;
    if (x === null) return 1;  // missing values last, whichever the direction
    if (y === null) return -1;
    return (x < y ? -1 : 1) * direction;
  }

  function cell(tr, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function number(value) {
    return value === null ? "–" : value.toLocaleString("en-US");
  }

  function refresh() {
    const wanted = filters.map(function (f) { return [f[0], f[1].value]; });
    const text = search.value.trim();
    shown = rows.filter(function (r) {
      for (const [i, value] of wanted) if (value !== "" && r[i] !== value) return false;
      return text === "" || r[col.order].indexOf(text) !== -1;
    });
    shown.sort(compare);
    page = Math.min(page, Math.max(0, Math.ceil(shown.length / PAGE) - 1));
    draw();
  }

  function draw() {
    const first = page * PAGE;
    const part = shown.slice(first, first + PAGE);
    const fragment = document.createDocumentFragment();
    for (const r of part) {
      const tr = document.createElement("tr");
      const id = r[col.order];
      const link = document.createElement("a");
      link.href = REPORTS + id + ".html";
      link.className = "report";
      link.textContent = id;
      cell(tr, "").appendChild(link);
      cell(tr, r[col.day]);
      cell(tr, r[col.recipe]);
      cell(tr, r[col.phase]);
      cell(tr, r[col.status], "status status-" + r[col.status]);
      for (const name of ["minted", "passed", "promoted", "quarantined"]) {
        cell(tr, number(r[col[name]]), "num");
      }
      const a = r[col.attainment];
      cell(tr, a === null ? "–" : (100 * a).toFixed(1) + "%", "num");
      cell(tr, r[col.reason], "reason");
      const code = document.createElement("code");
      code.textContent = "toyfoundry why " + id;
      cell(tr, "").appendChild(code);
      fragment.appendChild(tr);
    }
    body.replaceChildren(fragment);
    count.textContent = shown.length === rows.length
      ? rows.length.toLocaleString("en-US") + " orders"
      : shown.length.toLocaleString("en-US") + " of " + rows.length.toLocaleString("en-US") + " orders";
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    where.textContent = "page " + (page + 1) + " of " + pages;
    prev.disabled = page === 0;
    next.disabled = page + 1 >= pages;
    for (const th of table.tHead.rows[0].cells) {
      const button = th.querySelector("button");
      const on = button !== null && col[button.dataset.col] === sortBy;
      th.setAttribute("aria-sort", on ? (direction > 0 ? "ascending" : "descending") : "none");
    }
  }

  for (const th of table.tHead.rows[0].cells) {
    const button = th.querySelector("button");
    if (button === null) continue;
    button.addEventListener("click", function () {
      const chosen = col[button.dataset.col];
      if (chosen === sortBy) {
        direction = -direction;
      } else {
        sortBy = chosen;
        // counts read best largest first; names and days in their own order
        direction = numeric.has(button.dataset.col) ? -1 : 1;
      }
      refresh();
    });
  }
  // `#status=blocked&phase=expansion` (the attention list's links) sets the filters
  function fromHash() {
    const wanted = new URLSearchParams(location.hash.slice(1));
    let any = false;
    for (const name of ["status", "recipe", "phase"]) {
      if (!wanted.has(name)) continue;
      const select = document.getElementById("f-" + name);
      select.value = wanted.get(name);
      if (select.value !== wanted.get(name)) select.value = "";
      any = true;
    }
    if (any) {
      page = 0;
      refresh();
      table.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", fromHash);
  for (const f of filters) f[1].addEventListener("change", function () { page = 0; refresh(); });
  search.addEventListener("input", function () { page = 0; refresh(); });
  prev.addEventListener("click", function () { page = Math.max(0, page - 1); draw(); });
  next.addEventListener("click", function () { page += 1; draw(); });
  refresh();
  fromHash();
}
