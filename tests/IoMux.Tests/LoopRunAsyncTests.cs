using System.Net.Sockets;
using IoMux.Conformance;
using IoMux.Interop;
using IoMux.Loop;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Tests;

/// <summary>The loop off the caller's thread: RunAsync and its cancellation (through each backend's wake),
/// DisposeAsync, cancellable NextAsync, and I/O sources on a SafeHandle; on every loop backend.</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed class LoopRunAsyncTests(BackendProvider backend)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly List<int> _fds = [];

    [TearDown]
    public void CloseDescriptors()
    {
        foreach (var fd in _fds)
            LibC.close(fd);
        _fds.Clear();
    }

    private EventLoop NewLoop() => LoopTests.NewLoop(backend);

    private (int Read, int Write) Pipe()
    {
        LibC.CreateNonBlockingPipe(out int r, out int w);
        _fds.Add(r);
        _fds.Add(w);
        return (r, w);
    }

    private static unsafe void WriteByte(int fd) { byte b = 1; Assert.That(LibC.write(fd, &b, 1), Is.EqualTo((nint)1)); }
    private static unsafe void ReadByte(int fd) { byte b; LibC.read(fd, &b, 1); }

    private static T Await<T>(Task<T> task)
    {
        Assert.That(task.Wait(Patience), Is.True, "the task did not complete in time");
        return task.Result;
    }

    [Test]
    public void RunAsyncRunsTheLoopOnAThreadOfItsOwnAndCancellationEndsItThroughTheWake()
    {
        using var loop = NewLoop();
        var (r, w) = Pipe();
        var ioThread = new TaskCompletionSource<Thread>(TaskCreationOptions.RunContinuationsAsynchronously);
        Thread? exitThread = null;
        loop.AddIo(r, Interest.Readable, (_, _) => { ReadByte(r); ioThread.TrySetResult(Thread.CurrentThread); });
        loop.AddExit(_ => exitThread = Thread.CurrentThread);
        using var stop = new CancellationTokenSource();
        var run = loop.RunAsync(stop.Token);
        WriteByte(w);
        var thread = Await(ioThread.Task);
        Assert.That(thread, Is.Not.SameAs(Thread.CurrentThread));
        Assert.That(run.IsCompleted, Is.False, "the loop runs until asked to exit");
        stop.Cancel(); // the loop sleeps in an infinite wait: only the wake ends it
        Assert.That(Await(run), Is.EqualTo(0));
        Assert.That(exitThread, Is.SameAs(thread), "the exit sources ran on the loop thread");
        Assert.That(thread.IsAlive, Is.False, "RunAsync's task completes once the loop thread has ended");
    }

    [Test]
    public void AnExitAskedBeforeTheCancellationKeepsItsCode()
    {
        using var loop = NewLoop();
        using var stop = new CancellationTokenSource();
        var ran = new ManualResetEventSlim();
        loop.AddExit(_ => { stop.Cancel(); ran.Set(); });
        var run = loop.RunAsync(stop.Token);
        loop.Exit(7);
        Assert.That(Await(run), Is.EqualTo(7));
        Assert.That(ran.IsSet, Is.True);
    }

    [Test]
    public void ACallbackThatThrowsFaultsRunAsyncsTask()
    {
        using var loop = NewLoop();
        loop.Post(() => throw new InvalidDataException("boom"));
        var run = loop.RunAsync();
        var e = Assert.Throws<AggregateException>(() => run.Wait(Patience))!;
        Assert.That(e.InnerException, Is.InstanceOf<EventLoopException>());
        Assert.That(e.InnerException!.InnerException, Is.InstanceOf<InvalidDataException>());
    }

    [Test]
    public void RunAsyncRunsOnceAndACancelledTokenDoesNotStartIt()
    {
        using var loop = NewLoop();
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        int iterationsSeen = -1;
        Assert.That(loop.RunAsync(cancelled.Token).IsCanceled, Is.True);
        loop.Post(() => iterationsSeen = (int)loop.Iterations);
        var run = loop.RunAsync(); // the cancelled call started nothing: this one runs
        Assert.Throws<InvalidOperationException>(() => loop.RunAsync());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Volatile.Read(ref iterationsSeen) < 0 && clock.Elapsed < Patience)
            Thread.Sleep(1);
        Assert.That(iterationsSeen, Is.Zero, "the posted action ran in the first iteration");
        loop.Exit();
        Assert.That(Await(run), Is.Zero);
    }

    [Test]
    public void DisposeAsyncAsksTheLoopToExitAndWaitsForItsThreadWhileDisposeRefuses()
    {
        var loop = NewLoop();
        var (r, _) = Pipe();
        var source = loop.AddIo(r, Interest.Readable, (_, _) => { });
        var started = new ManualResetEventSlim();
        Thread? thread = null;
        bool exitRan = false;
        loop.Post(() => { thread = Thread.CurrentThread; started.Set(); });
        loop.AddExit(_ => exitRan = true);
        var run = loop.RunAsync();
        Assert.That(started.Wait(Patience), Is.True);
        var refused = Assert.Throws<InvalidOperationException>(loop.Dispose)!;
        Assert.That(refused.Message, Does.Contain("DisposeAsync"));
        Assert.That(loop.DisposeAsync().AsTask().Wait(Patience), Is.True);
        Assert.That(run.IsCompletedSuccessfully, Is.True);
        Assert.That((exitRan, thread!.IsAlive, source.IsDisposed), Is.EqualTo((true, false, true)));
        Assert.Throws<ObjectDisposedException>(() => loop.AddDefer(_ => { }));
    }

    [Test]
    public void DisposeAsyncFromACallbackCompletesOnceTheLoopHasExited()
    {
        var loop = NewLoop();
        Task? disposal = null;
        loop.Post(() => disposal = loop.DisposeAsync().AsTask());
        var run = loop.RunAsync();
        Assert.That(Await(run), Is.Zero);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Volatile.Read(ref disposal) is null && clock.Elapsed < Patience)
            Thread.Sleep(1);
        Assert.That(disposal!.Wait(Patience), Is.True);
        Assert.Throws<ObjectDisposedException>(() => loop.AddDefer(_ => { }));
    }

    [Test]
    public void DisposeFromAnExitSourceOnTheLoopThreadIsAllowed()
    {
        var loop = NewLoop();
        loop.AddExit(_ => loop.Dispose());
        var run = loop.RunAsync();
        loop.Exit(4);
        Assert.That(Await(run), Is.EqualTo(4));
        Assert.Throws<ObjectDisposedException>(() => loop.AddDefer(_ => { }));
    }

    [Test]
    public void ACancelledNextAsyncEndsWithOperationCanceledAndTheSourceStaysUsable()
    {
        using var loop = NewLoop();
        var (r, w) = Pipe();
        var source = loop.AddIo(r, Interest.Readable);
        using var cancel = new CancellationTokenSource();
        Exception? cancelled = null;
        Readiness after = Readiness.None;
        int continuationThread = -1;
        using var waiting = new ManualResetEventSlim();
        async Task Reader()
        {
            try
            {
                var pending = source.NextAsync(cancel.Token);
                waiting.Set(); // the await is pending now: the cancellation must come through the loop
                await pending;
            }
            catch (OperationCanceledException e)
            {
                cancelled = e;
                continuationThread = Environment.CurrentManagedThreadId;
            }
            after = await source.NextAsync(CancellationToken.None);
            ReadByte(r);
            loop.Exit(3);
        }
        loop.Post(() => _ = Reader());
        var run = loop.RunAsync();
        Assert.That(waiting.Wait(Patience), Is.True);
        Thread.Sleep(20);
        Assert.That(Volatile.Read(ref cancelled), Is.Null, "nothing cancelled yet");
        cancel.Cancel(); // from this thread: the await ends on the loop thread
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Volatile.Read(ref cancelled) is null && clock.Elapsed < Patience)
            Thread.Sleep(1);
        Assert.That(cancelled, Is.InstanceOf<OperationCanceledException>());
        Assert.That(((OperationCanceledException)cancelled!).CancellationToken, Is.EqualTo(cancel.Token));
        Assert.That(continuationThread, Is.Not.EqualTo(Environment.CurrentManagedThreadId));
        WriteByte(w);
        Assert.That(Await(run), Is.EqualTo(3), "the next await on the same source reported readiness");
        Assert.That(after & Readiness.Readable, Is.EqualTo(Readiness.Readable));
    }

    [Test]
    public void ACancellationAfterTheAwaitCompletedDoesNotReachTheNextAwait()
    {
        using var loop = NewLoop();
        var (r, w) = Pipe();
        var source = loop.AddIo(r, Interest.Readable);
        using var cancel = new CancellationTokenSource();
        int step = 0;
        async Task Reader()
        {
            await source.NextAsync(cancel.Token);
            ReadByte(r);
            step = 1;
            await source.NextAsync(); // no token: only readiness ends it
            ReadByte(r);
            step = 2;
        }
        Task? reader = null;
        loop.Post(() => reader = Reader());
        WriteByte(w);
        for (int i = 0; i < 1000 && step < 1; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(step, Is.EqualTo(1));
        cancel.Cancel();
        for (int i = 0; i < 5; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(5));
        Assert.That((step, reader!.IsCompleted), Is.EqualTo((1, false)), "the second await ignored the first await's token");
        WriteByte(w);
        for (int i = 0; i < 1000 && step < 2; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(reader.IsCompletedSuccessfully, Is.True);
    }

    [Test]
    public void AnAlreadyCancelledTokenEndsTheAwaitAtOnceAndArmsNothing()
    {
        using var loop = NewLoop();
        var (r, _) = Pipe();
        var source = loop.AddIo(r, Interest.Readable);
        var awaited = source.NextAsync(new CancellationToken(canceled: true));
        Assert.That(awaited.IsCanceled, Is.True);
        Assert.That(source.NextAsync().IsCompleted, Is.False, "no await was left pending: a new one can start");
    }

    [Test]
    public void AnIoSourceOnASocketsSafeHandleReportsItAndStopsOnceTheSocketIsDisposed()
    {
        using var loop = NewLoop();
        using var context = new ScenarioContext(backend);
        var fresh = context.Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)); // blocking, as made
        Assert.Throws<BlockingSocketException>(() => loop.AddIo(fresh.SafeHandle, Interest.Readable, (_, _) => { }));
        Assert.That(loop.Poller.RegistrationCount, Is.Zero, "a refused socket leaves no registration");
        var (local, peer) = context.TcpPair();
        int reports = 0;
        var source = loop.AddIo(local.SafeHandle, Interest.Readable, (_, _) => reports++);
        Assert.That(source.Descriptor, Is.EqualTo((int)local.SafeHandle.DangerousGetHandle()));
        peer.Send("x"u8);
        for (int i = 0; i < 100 && reports == 0; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(50));
        Assert.That(reports, Is.GreaterThan(0));
        Assert.That(Task.Run(local.Dispose).Wait(Patience), Is.True, "the source does not pin the socket's handle");
        var (_, w) = Pipe(); // likely takes the socket's number
        WriteByte(w);
        int before = reports;
        for (int i = 0; i < 3; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(reports, Is.EqualTo(before), "nothing is reported for a closed handle, even if its number is reused");
        source.Dispose();
        Assert.Throws<ObjectDisposedException>(() => loop.AddIo(local.SafeHandle, Interest.Readable));
    }

    [Test]
    public void AnAwaitableIoSourceOnAFileHandleTakesTheDescriptorOfItsHandle()
    {
        using var loop = NewLoop();
        var (r, w) = Pipe();
        _fds.Remove(r);
        using var handle = new SafeFileHandle(r, ownsHandle: true);
        var source = loop.AddIo(handle, Interest.Readable);
        Readiness seen = Readiness.None;
        loop.Post(async () => { seen = await source.NextAsync(); loop.Exit(); });
        WriteByte(w);
        var run = loop.RunAsync();
        Assert.That(Await(run), Is.Zero);
        Assert.That(seen & Readiness.Readable, Is.EqualTo(Readiness.Readable));
        Assert.That(source.Registration!.Descriptor, Is.EqualTo(r));
    }
}
