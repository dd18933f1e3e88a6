// Loaded as a file rather than inline so the page works under a strict
// Content-Security-Policy (script-src 'self').
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    // Relative to /docs/, so it also works behind a path prefix.
    url: "../openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    // The default posts the spec to an external validator service.
    validatorUrl: null,
  });
});
