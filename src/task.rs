//! Core operations that may block (sysfs writes, a device reset) run on the libuv pool
//! as Promises, so an Electron main thread or a server never waits on the kernel.

use napi::bindgen_prelude::{AsyncTask, ToNapiValue, TypeName};
use napi::{Env, Task};
use vfio_ioctls::VfioError;

use crate::error::IntoJs;

type Work<T> = Box<dyn FnOnce() -> Result<T, VfioError> + Send>;

/// One core operation and how its result becomes a JS value. The error is kept as a core
/// error until `resolve`, back on the JS thread, where JS errors can be made.
pub struct CoreTask<T: Send + 'static, J> {
    work: Option<Work<T>>,
    convert: fn(T) -> J,
}

/// Runs `work` on the pool; the Promise resolves with `convert` of its result.
pub fn spawn<T: Send + 'static, J: ToNapiValue + TypeName>(
    work: impl FnOnce() -> Result<T, VfioError> + Send + 'static,
    convert: fn(T) -> J,
) -> AsyncTask<CoreTask<T, J>> {
    AsyncTask::new(CoreTask {
        work: Some(Box::new(work)),
        convert,
    })
}

impl<T: Send + 'static, J: ToNapiValue + TypeName> Task for CoreTask<T, J> {
    type Output = Result<T, VfioError>;
    type JsValue = J;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        match self.work.take() {
            Some(work) => Ok(work()),
            None => Err(napi::Error::from_reason("the task ran twice")),
        }
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> napi::Result<J> {
        output.map(self.convert).js()
    }
}
