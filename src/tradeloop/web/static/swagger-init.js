// Starts Swagger UI on /docs. A file, not an inline script: the Content-Security-Policy
// allows scripts from this site only.
(function () {
  "use strict";
  var root = document.getElementById("api-docs");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Swagger UI's default shows a badge image from validator.swagger.io: nothing external.
    validatorUrl: null
  });
})();
