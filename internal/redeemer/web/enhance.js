(function () {
  // Progressive enhancement: without this script the form posts and the
  // server answers with a page; with it, the answer appears in place.
  var form = document.getElementById('redeem');
  if (!form || !window.fetch || !window.JSON) return;
  var out = document.getElementById('result');
  var input = document.getElementById('email');
  var button = form.querySelector('button');
  var msgs = JSON.parse(document.getElementById('msgs').textContent);
  var state = document.getElementById('state');
  // After an answer about the code, say its state again: the page's own
  // copy is from before this redemption. no-store: not from a cache either.
  function recount() {
    fetch(form.action, { headers: { 'Accept': 'application/json' }, cache: 'no-store' }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (st) {
      if (!st || !state) return;
      var text = st.state === 'active' ? msgs.remaining.replace('{n}', st.remaining) : msgs[msgs.states[st.state]];
      if (text) state.textContent = text;
    }).catch(function () {});
  }
  function show(kind, text) {
    out.className = 'result ' + kind;
    out.textContent = text;
    out.focus();
  }
  function done(kind, text, fieldError) {
    button.disabled = false;
    button.textContent = msgs.button;
    input.setAttribute('aria-invalid', fieldError ? 'true' : 'false');
    show(kind, text);
    if (fieldError) input.focus();
  }
  function send(attempt) {
    button.disabled = true;
    button.textContent = msgs.sending;
    fetch(form.action, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json', 'Accept-Language': document.documentElement.lang },
      body: JSON.stringify({ email: input.value })
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (r.status === 201 || r.status === 200 || r.status === 410 || r.status === 423) recount();
        if (r.status === 201) return done('success', msgs.redeemed);
        if (r.status === 200) return done('success', msgs.already);
        if ((r.status === 429 || r.status === 503) && attempt < 3) {
          // Polite retry: wait what the server asked (Retry-After), a little at most.
          var wait = Math.min(Math.max(parseInt(r.headers.get('Retry-After') || '1', 10) || 1, 1), 30);
          show('info', msgs.busy.replace('{n}', wait));
          return setTimeout(function () { send(attempt + 1); }, wait * 1000);
        }
        var key = msgs.codes[body.code] || 'error';
        done(key === 'invalid' ? 'error' : (key === 'already' ? 'success' : 'error'), msgs[key] || msgs.error, key === 'invalid');
      });
    }).catch(function () { done('error', msgs.error); });
  }
  form.addEventListener('submit', function (e) { e.preventDefault(); send(0); });
})();
