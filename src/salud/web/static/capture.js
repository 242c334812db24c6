// The operator's photo capture: the browser camera, a portrait crop (3:4) of the frame, sent
// as JPEG to the enrollment's photo address with the CSRF token. Without a camera, the file
// input of the same page does the job.
(() => {
  const $ = (id) => document.getElementById(id);
  const button = $("camera");
  if (!button) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const target = $("photo-upload").getAttribute("action");
  let stream = null;

  button.addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
    } catch (err) {
      button.textContent = "No hay cámara disponible: suba un archivo";
      button.disabled = true;
      return;
    }
    const video = $("video");
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    $("shoot").hidden = false;
  });

  $("shoot").addEventListener("click", async () => {
    const video = $("video");
    const w = video.videoWidth, h = video.videoHeight;
    if (!w) return;
    const cropH = h, cropW = Math.min(w, Math.round(h * 3 / 4));
    const canvas = $("frame");
    const scale = Math.min(1, 900 / cropH);
    canvas.width = Math.round(cropW * scale);
    canvas.height = Math.round(cropH * scale);
    canvas.getContext("2d").drawImage(video, (w - cropW) / 2, 0, cropW, cropH, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.9));
    stream.getTracks().forEach((t) => t.stop());
    const answer = await fetch(target, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "image/jpeg" }, body: blob,
    });
    location.href = answer.url;
  });
})();
