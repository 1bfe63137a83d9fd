#!/usr/bin/env node
console.log('lb: under construction');
