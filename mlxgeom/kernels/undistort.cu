// ITERATIONS Newton steps of the K-coefficient OpenCV model (lens.cuh) per point: targets t (2) to
// undistorted points out (2), coefficients c (K; SINGLE: one camera for every point).
// Template: K, ITERATIONS, SINGLE, TB. Header: common.cuh, lens.cuh.

// @body (the kernel's body; what is above is its header)
  __shared__ float tile[TB * (imax(SINGLE ? 0 : K, 2) + 1)];
  const long long total = t_shape[0];
  float c_r[K], t_r[2], out_r[2];
  stage_in<K, TB, SINGLE>(c, total, tile, c_r);
  stage_in<2, TB>(t, total, tile, t_r);
  newton_iterations<K>(lens<K>(c_r), t_r[0], t_r[1], ITERATIONS, out_r[0], out_r[1]);
  stage_out<2, TB>(out_r, total, tile, out);
