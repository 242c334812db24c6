// Reception: scan a card with the phone camera (frames decoded by the server with zxing-cpp)
// or read it with a barcode scanner into the text box; show the verdict and the photo.
(() => {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const headers = { "X-CSRF-Token": csrf };
  let stream = null;
  let busy = false;

  // The printed fields the registry changed since the card was issued (`outdated`).
  const FIELD = { given_names: "nombre", surnames: "apellidos", birth_date: "fecha de nacimiento", sex: "sexo", nationality: "nacionalidad", blood_type: "grupo sanguíneo", organ_donor: "donación de órganos" };
  const STATE = { current: "vigente", suspended: "suspendida", revoked: "revocada", superseded: "reemplazada por una reposición", unknown: "no está en el padrón" };

  function render(r) {
    $("result").hidden = false;
    const ok = r.verdict !== "invalid";
    const verdict = $("verdict");
    verdict.className = `verdict ${ok ? "valid" : "invalid"}`;
    verdict.textContent = ok
      ? (r.verdict === "valid_as_of" ? "Credencial digital válida" : "Credencial válida")
      : `Credencial NO válida. ${r.message}`;
    // A valid card whose printed data the registry has changed since: said, with the fields
    // and what to do (the message carries the note to reissue it).
    const outdated = ok ? (r.outdated || []) : [];
    const note = $("outdated");
    note.hidden = outdated.length === 0;
    $("outdated-fields").textContent = outdated.map((f) => FIELD[f] || f).join(", ");
    $("outdated-note").textContent = outdated.length ? r.message : "";
    const photo = $("photo");
    if (r.photo) { photo.src = r.photo; photo.hidden = false; } else { photo.hidden = true; }
    const h = r.holder;
    $("r-name").textContent = h ? `${h.given_names} ${h.surnames}` : "—";
    $("r-curp").textContent = h ? h.curp : "—";
    $("r-birth").textContent = h ? h.birth_date.split("-").reverse().join("/") : "—";
    $("r-card").textContent = r.card ? `${STATE[r.card] || r.card}${r.sequence ? ` (núm. ${r.sequence})` : ""}` : "—";
    $("r-rights").textContent = (r.entitlements || []).map((e) => e.institution).join(", ") || "ninguna";
    $("r-unit").textContent = r.assigned_clues || "—";
  }

  async function post(url, body, type) {
    const answer = await fetch(url, { method: "POST", credentials: "same-origin", headers: { ...headers, "Content-Type": type }, body });
    if (answer.status === 401) { location.href = "/entrar?next=/verificar"; return null; }
    return answer.json();
  }

  $("manual").addEventListener("submit", async (event) => {
    event.preventDefault();
    const qr = $("qr").value.replace(/[\r\n]+$/, "");
    if (!qr) return;
    const r = await post("/verificar/texto", JSON.stringify({ qr }), "application/json");
    if (r) render(r.verdict ? r : { verdict: "invalid", message: r.detail || "Error", entitlements: [] });
  });

  async function tick() {
    if (!stream || busy) return;
    const video = $("video");
    if (!video.videoWidth) return;
    busy = true;
    const canvas = $("frame");
    const scale = Math.min(1, 1280 / video.videoWidth);
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.9));
    try {
      const r = await post("/verificar/imagen", blob, "image/jpeg");
      if (r && r.found) { render(r.result); stop(); }
    } finally { busy = false; }
  }

  function stop() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    $("video").hidden = true;
    $("camera").textContent = "Escanear con la cámara";
  }

  $("camera").addEventListener("click", async () => {
    if (stream) { stop(); return; }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment", width: { ideal: 1280 } } });
    } catch (error) {
      $("camera").textContent = "No hay acceso a la cámara: use el lector o pegue el código";
      return;
    }
    const video = $("video");
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    $("camera").textContent = "Detener cámara";
  });
  setInterval(tick, 700);
})();
