"""The frame every catalogue page shares: styles, the few lines of script, escaping helpers.

Everything is inline, so one page copied alone still looks right, and nothing is fetched from
anywhere: the site works from ``file://`` with no network. The script does three things:
marks images that fail to load (they show as a grey "missing" box, and the page's
``data-images-*`` attributes count them, which the browser tests read), sorts a table by the
clicked column, and filters its rows by the words in the filter box or in the URL's
``#filter=`` fragment (or ``?filter=`` query), so a filtered view can be bookmarked.
"""

from __future__ import annotations

from html import escape

CSS = """
:root{--ink:#222;--muted:#6b6b6b;--line:#e3e3e3;--bg:#fafafa;--ok:#2f7d4f;--bad:#c2402a;
--wait:#b7791f;--accent:#3566a8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:var(--bg)}
header.top{background:#1f2a36;color:#fff;padding:10px 24px;display:flex;gap:24px;
align-items:baseline}
header.top a{color:#cfe0f5;text-decoration:none}header.top a:hover{text-decoration:underline}
header.top .brand{font-weight:600;color:#fff}
main{padding:16px 24px 48px;max-width:1600px}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:17px;margin:28px 0 10px}
a{color:var(--accent)}
.muted{color:var(--muted)}
.tools{display:flex;gap:12px;align-items:center;margin:8px 0 12px}
.tools input{font:inherit;padding:6px 10px;width:340px;border:1px solid #bbb;border-radius:4px}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);font-size:13px}
table.sortable{width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
th{background:#f1f3f5;font-weight:600;white-space:nowrap;position:sticky;top:0}
th[data-sort]{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr:hover td{background:#f6f9fd}
.strip{display:flex;gap:2px}
.strip img{height:34px;width:auto;border-radius:2px;background:#eee}
.pill{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;
font-variant-numeric:tabular-nums}
.done{background:#e3f1e8;color:var(--ok)}.failed{background:#f8e1dc;color:var(--bad)}
.pending{background:#fbf0dc;color:var(--wait)}.removed{background:#eee;color:var(--muted)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(178px,1fr));gap:12px}
figure.sec{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;
padding:8px;display:flex;flex-direction:column;gap:4px}
figure.sec .pic{display:flex;align-items:center;justify-content:center;height:124px;
background:#f0f0f0;border-radius:4px;overflow:hidden}
figure.sec .pic img{max-width:100%;max-height:124px;height:auto;width:auto}
figure.sec.failed{border-color:#e8b4a8;background:#fdf5f3}
figure.sec .none{color:var(--muted);font-size:12px;text-align:center;padding:8px}
figcaption{font-size:12px;display:flex;flex-direction:column;gap:2px}
figcaption .num{font-weight:600;font-size:13px}
.err{color:var(--bad);word-break:break-word}
.ccf{color:#444}
img.broken{visibility:hidden}
.box{background:#fff;border:1px solid var(--line);border-radius:6px;padding:12px 16px;
margin-bottom:12px}
.cols{display:flex;flex-wrap:wrap;gap:16px}
.cols>.box{flex:1 1 420px}
svg.chart{display:block;width:100%;height:auto;background:#fff;margin-top:6px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;border-radius:2px}
pre{font-size:12px;margin:6px 0;white-space:pre-wrap}
"""

SCRIPT_HEAD = (
    # Capture every image error, even those that happen before the page's script runs.
    "document.addEventListener('error',function(e){var t=e.target;"
    "if(t&&t.tagName==='IMG')t.classList.add('broken')},true);"
)

SCRIPT = """
(function(){
  window.addEventListener('load',function(){
    var ok=0,broken=0,all=document.images;
    for(var i=0;i<all.length;i++){
      if(all[i].classList.contains('broken'))broken++;else if(all[i].naturalWidth>0)ok++;}
    document.body.setAttribute('data-images-loaded',ok);
    document.body.setAttribute('data-images-broken',broken);
  });
  var table=document.querySelector('table.sortable');
  if(!table)return;
  var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
  var heads=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads,function(th,col){
    if(!th.hasAttribute('data-sort'))return;
    th.addEventListener('click',function(){
      var up=th.getAttribute('aria-sort')!=='ascending',num=th.getAttribute('data-sort')==='n';
      Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort')});
      th.setAttribute('aria-sort',up?'ascending':'descending');
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute('data-v')||a.cells[col].textContent,
            y=b.cells[col].getAttribute('data-v')||b.cells[col].textContent;
        var c=num?(parseFloat(x)||0)-(parseFloat(y)||0):x.localeCompare(y,undefined,{numeric:true});
        return up?c:-c;});
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
  var box=document.getElementById('filter'),count=document.getElementById('shown');
  if(!box)return;
  function apply(write){
    var words=box.value.toLowerCase().split(/\\s+/).filter(Boolean),shown=0;
    rows.forEach(function(r){
      var text=r.getAttribute('data-text')||'';
      var hit=words.every(function(w){return text.indexOf(w)>=0});
      r.hidden=!hit;if(hit)shown++;});
    if(count)count.textContent=shown+' of '+rows.length+' shown';
    document.body.setAttribute('data-shown',shown);
    if(write){try{history.replaceState(null,'',box.value.trim()?
      '#filter='+encodeURIComponent(box.value.trim()):location.pathname+location.search);}
      catch(e){}}
  }
  var start='',hash=location.hash.match(/^#filter=(.*)$/);
  if(hash)start=decodeURIComponent(hash[1]);
  else{var q=new URLSearchParams(location.search).get('filter');if(q)start=q;}
  box.value=start;apply(false);
  box.addEventListener('input',function(){apply(true)});
  window.addEventListener('hashchange',function(){
    var h=location.hash.match(/^#filter=(.*)$/);box.value=h?decodeURIComponent(h[1]):'';
    apply(false);});
})();
"""


def e(value: object) -> str:
    """HTML-escape anything (quotes too: values go into attributes)."""
    return escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, nav: list[tuple[str, str]], note: str = "") -> str:
    """A whole HTML document around ``body`` (already escaped markup).

    Nothing in it depends on when it was built, so an unchanged page renders to the same bytes
    and is not rewritten."""
    links = "".join(f'<a href="{e(href)}">{e(label)}</a>' for label, href in nav)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style><script>{SCRIPT_HEAD}</script></head>"
        f'<body><header class="top"><span class="brand">allen-mirror catalogue</span>{links}'
        f'<span class="muted" style="margin-left:auto">{e(note)}</span></header>'
        f"<main>{body}</main><script>{SCRIPT}</script></body></html>\n"
    )


def pill(status: str, text: object) -> str:
    """A coloured count or status."""
    return f'<span class="pill {e(status)}">{e(text)}</span>'
