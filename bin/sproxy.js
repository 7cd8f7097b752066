#!/usr/bin/env node
import '../dist/sproxy/main.js';
