/* The console: plain modern JavaScript modules, no build step. */
