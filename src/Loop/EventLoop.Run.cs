using System.Runtime.InteropServices;

namespace IoMux.Loop;

// The loop in a host: RunAsync on a thread of its own, cancellation through the loop's wake, DisposeAsync
// that waits for that thread.
public sealed partial class EventLoop : IAsyncDisposable
{
    /// <summary>
    /// Runs the loop (as <see cref="Run"/>) on a thread of its own and completes with the exit code once the
    /// loop has exited, its exit sources ran and its thread has ended; faults with <see cref="EventLoopException"/> when a callback
    /// threw. Cancelling <paramref name="cancellationToken"/> asks the loop to exit, as <see cref="Exit"/> from
    /// another thread does (exit code 0, unless an exit was asked already); the task then completes normally,
    /// as <c>IHost.RunAsync</c> does when its token asks it to stop. A loop runs once.
    /// </summary>
    /// <returns>The exit code; a cancelled task when <paramref name="cancellationToken"/> was cancelled before
    /// the call (the loop was not started then).</returns>
    /// <exception cref="InvalidOperationException">RunAsync was already called on this loop.</exception>
    /// <exception cref="ObjectDisposedException">The loop is disposed.</exception>
    public Task<int> RunAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        if (cancellationToken.IsCancellationRequested)
            return Task.FromCanceled<int>(cancellationToken);
        if (Interlocked.Exchange(ref _runAsyncCalled, 1) != 0)
            throw new InvalidOperationException("RunAsync was already called on this loop; a loop runs once.");
        var completion = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() => RunOnThread(completion, cancellationToken)) { IsBackground = true, Name = "IoMux loop" };
        _runThreadId = thread.ManagedThreadId;
        _runTask = completion.Task;
        thread.UnsafeStart(); // the loop thread does not inherit the caller's ExecutionContext (a host's scope)
        return completion.Task;
    }

    private void RunOnThread(TaskCompletionSource<int> completion, CancellationToken cancellationToken)
    {
        int code = 0;
        Exception? failure = null;
        try
        {
            using (cancellationToken.UnsafeRegister(static s => ((EventLoop)s!).ExitUnlessAsked(), this))
                code = Run();
        }
        catch (Exception e)
        {
            failure = e;
        }
        // The task completes once this thread has ended, so whoever awaits it (a host's StopAsync) knows the
        // thread is gone: a pool thread waits for the end, which is only this method's return away.
        var thread = Thread.CurrentThread;
        ThreadPool.UnsafeQueueUserWorkItem(_ =>
        {
            thread.Join();
            if (failure is null)
                completion.SetResult(code);
            else
                completion.SetException(failure);
        }, null);
    }

    /// <summary>Exit(0) unless an exit was asked already (its code stands). Any thread.</summary>
    private void ExitUnlessAsked()
    {
        if (!_exitRequested)
            Exit(0);
        else
            WakeUp();
    }

    private void ThrowIfRunningElsewhere()
    {
        if (_runTask is { IsCompleted: false } && Environment.CurrentManagedThreadId != _runThreadId)
            throw new InvalidOperationException("RunAsync's thread still runs this loop; call DisposeAsync, which asks it to exit and waits for it.");
    }

    /// <summary>When <see cref="RunAsync"/> runs the loop: asks it to exit (as a cancellation does) and waits,
    /// without blocking a thread, until its thread has finished; then disposes as <see cref="Dispose"/> does.
    /// The exception a callback stopped the loop with is not rethrown here: <see cref="RunAsync"/>'s task
    /// carries it. Safe to call from a callback on the loop thread (the disposal then completes after the loop
    /// has exited).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_runTask is { } run)
        {
            ExitUnlessAsked();
            await ((Task)run).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // completes once the thread ended
        }
        Dispose();
    }
}
