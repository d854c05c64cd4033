using System.Diagnostics;
using IoMux.Loop;
using IoMux.Web;

namespace IoMux.Tests.Web;

/// <summary>Blocking file reads on the pool's threads, completions on the loop thread, and a bounded queue that
/// refuses work instead of growing.</summary>
public sealed class FileReadPoolTests
{
    [Test, CancelAfter(30_000)]
    public void ReadsCompleteOnTheLoopThreadWithTheFileContents(CancellationToken token)
    {
        var path = Path.GetTempFileName();
        var content = new byte[1 << 20];
        new Random(5).NextBytes(content);
        File.WriteAllBytes(path, content);
        try
        {
            using var loop = new EventLoop(PollerFactory.Create());
            using var pool = new FileReadPool(loop, threads: 2, queueCapacity: 16);
            using var file = File.OpenHandle(path);
            var result = new byte[content.Length];
            const int chunk = 64 * 1024;
            int completed = 0, offLoop = 0;
            for (int i = 0; i < content.Length / chunk; i++)
            {
                int at = i * chunk;
                Assert.That(pool.TryRead(file, at, result.AsMemory(at, chunk), (bytes, error) =>
                {
                    Assert.That(error, Is.Null);
                    Assert.That(bytes, Is.EqualTo(chunk));
                    if (!loop.IsLoopThread)
                        offLoop++;
                    if (++completed == content.Length / chunk)
                        loop.Exit();
                }), Is.True);
            }
            using (token.Register(() => loop.Exit(1)))
                Assert.That(loop.Run(), Is.EqualTo(0), "the reads did not complete before the test's deadline");
            Assert.That(offLoop, Is.EqualTo(0));
            Assert.That(result, Is.EqualTo(content));
            Assert.That(pool.InFlight, Is.EqualTo(0));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test, CancelAfter(30_000)]
    public void AFullQueueRefusesReadsUntilThePoolCatchesUp(CancellationToken token)
    {
        // The disk outlives the pool (declared first, disposed last), and the finally opens it before the pool's
        // Dispose waits for its worker: a failed assertion must not leave that worker blocked on the disk.
        using var disk = new SemaphoreSlim(0); // a disk that answers one read per release
        using var loop = new EventLoop(PollerFactory.Create());
        var pool = new FileReadPool(loop, threads: 1, queueCapacity: 2);
        pool.Reader = (_, buffer, _) =>
        {
            disk.Wait(token);
            return buffer.Length;
        };
        var path = Path.GetTempFileName();
        try
        {
            using var file = File.OpenHandle(path);
            int completed = 0;
            var errors = new List<Exception>();
            Action<int, Exception?> done = (_, error) => { completed++; if (error is not null) errors.Add(error); };
            Assert.That(pool.TryRead(file, 0, new byte[16], done), Is.True);
            Assert.That(SpinWait.SpinUntil(() => pool.Waiting == 0, 5000), Is.True, "the worker did not take the first read");
            Assert.That(pool.TryRead(file, 0, new byte[16], done), Is.True);
            Assert.That(pool.TryRead(file, 0, new byte[16], done), Is.True);
            Assert.That(pool.TryRead(file, 0, new byte[16], done), Is.False, "a full queue accepted more work");
            Assert.That(pool.InFlight, Is.EqualTo(3));

            disk.Release(3);
            var clock = Stopwatch.StartNew();
            while (completed < 3 && clock.Elapsed < TimeSpan.FromSeconds(10))
                loop.RunOnce(TimeSpan.FromMilliseconds(100));
            Assert.That(completed, Is.EqualTo(3));
            Assert.That(pool.TryRead(file, 0, new byte[16], done), Is.True, "the pool refuses work after catching up");
            disk.Release();
            while (completed < 4 && clock.Elapsed < TimeSpan.FromSeconds(10))
                loop.RunOnce(TimeSpan.FromMilliseconds(100));
            Assert.That(completed, Is.EqualTo(4));
            Assert.That(errors, Is.Empty);
            Assert.That(pool.InFlight, Is.EqualTo(0));
        }
        finally
        {
            disk.Release(16); // more than the pool can hold: no read of this test stays blocked
            pool.Dispose();
            File.Delete(path);
        }
    }

    [Test, CancelAfter(30_000)]
    public void DisposeGivesUpOnAReadTheDiskNeverAnswers(CancellationToken token)
    {
        using var disk = new ManualResetEventSlim(false); // a dead disk until the test opens it
        using var loop = new EventLoop(PollerFactory.Create());
        var pool = new FileReadPool(loop, threads: 1, queueCapacity: 2) { DisposeTimeout = TimeSpan.FromMilliseconds(200) };
        Thread? worker = null;
        pool.Reader = (_, buffer, _) =>
        {
            worker = Thread.CurrentThread;
            disk.Wait(token);
            return buffer.Length;
        };
        var path = Path.GetTempFileName();
        try
        {
            using var file = File.OpenHandle(path);
            int completed = 0;
            Assert.That(pool.TryRead(file, 0, new byte[16], (_, _) => completed++), Is.True);
            Assert.That(SpinWait.SpinUntil(() => worker is not null, 5000), Is.True, "the worker did not start the read");

            // Dispose on another thread, so that a Dispose which waits forever fails this test instead of hanging it.
            var clock = Stopwatch.StartNew();
            var disposing = Task.Run(pool.Dispose, token);
            Assert.That(disposing.Wait(TimeSpan.FromSeconds(10), token), Is.True, "Dispose waited for a read the disk never answers");
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)));
            Assert.That(worker!.IsAlive, Is.True, "the stuck read ended before the disk answered");
            Assert.That(pool.TryRead(file, 0, new byte[16], (_, _) => { }), Is.False, "a disposed pool took a read");

            // The disk answers at last: the abandoned worker finishes its read, posts the completion and ends.
            disk.Set();
            Assert.That(worker.Join(TimeSpan.FromSeconds(10)), Is.True, "the abandoned worker did not end after its read");
            while (completed < 1 && clock.Elapsed < TimeSpan.FromSeconds(15))
                loop.RunOnce(TimeSpan.FromMilliseconds(100));
            Assert.That(completed, Is.EqualTo(1));
        }
        finally
        {
            disk.Set();
            pool.Dispose();
            File.Delete(path);
        }
    }

    [Test, CancelAfter(30_000)]
    public void AFailedReadDeliversItsExceptionToTheCompletion(CancellationToken token)
    {
        using var loop = new EventLoop(PollerFactory.Create());
        using var pool = new FileReadPool(loop, threads: 1, queueCapacity: 4);
        var path = Path.GetTempFileName();
        try
        {
            var file = File.OpenHandle(path);
            file.Dispose();
            Exception? seen = null;
            Assert.That(pool.TryRead(file, 0, new byte[8], (_, error) => { seen = error; loop.Exit(); }), Is.True);
            using (token.Register(() => loop.Exit(1)))
                Assert.That(loop.Run(), Is.EqualTo(0), "the failed read did not complete before the test's deadline");
            Assert.That(seen, Is.InstanceOf<ObjectDisposedException>());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
