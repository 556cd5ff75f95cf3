// Progressive enhancement: with JS on, classify via the JSON API without reloading the page.
"use strict";

(function () {
  const form = document.getElementById("review-form");
  const textArea = document.getElementById("review-text");
  const result = document.getElementById("result");

  function show(children) {
    result.replaceChildren(...children);
    result.hidden = false;
  }

  function paragraph(className, parts) {
    const p = document.createElement("p");
    p.className = className;
    for (const [id, text] of parts) {
      const span = document.createElement("span");
      if (id) span.id = id;
      span.textContent = text;
      p.append(span);
    }
    return p;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const response = await fetch("/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: textArea.value }),
      });
      const body = await response.json();
      if (!response.ok) {
        show([paragraph("error", [["error", body.error ? body.error.message : response.statusText]])]);
        return;
      }
      show([
        paragraph("verdict " + body.label, [["label", body.label], [null, " P(positive) = "], ["score", body.score.toFixed(3)]]),
        paragraph("meta", [[null, "model "], ["model-version", body.model_version]]),
      ]);
    } catch (error) {
      show([paragraph("error", [["error", "Could not reach the service: " + error]])]);
    }
  });
})();
