// Express 4 is installed under the alias "express4"; its API is a subset of the typed Express 5 one used here.
declare module 'express4' {
  import express from 'express';
  export default express;
}
