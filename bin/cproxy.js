#!/usr/bin/env node
import '../dist/cproxy/main.js';
