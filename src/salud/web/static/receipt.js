// The receipt's print button (no inline handlers: the Content-Security-Policy forbids them).
document.getElementById("print")?.addEventListener("click", () => window.print());
