-- A module for csp.thread's module-name form (spec/thread_spec.lua): returns the thread's function.
return function(a, b)
  return "module", a * b
end
